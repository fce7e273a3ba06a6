package pdp

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// Header mutations: an allow rule may name request headers to set on the
// call it allows (the Envoy door adds them upstream). Names are checked
// here, once, so no door forwards a header a policy must not control.

// reservedHeaders may not be set by policy: credentials and headers that
// frame or route the request. (agentpdp's own x-agentpdp-* are refused by
// prefix, HTTP/2 pseudo-headers as non-tokens.)
var reservedHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
	"keep-alive": true, "te": true, "trailer": true, "upgrade": true, "proxy-connection": true,
	"authorization": true, "proxy-authorization": true, "cookie": true,
}

// checkHeader reports why a policy may not set name: value, or "" when it
// may. name must already be lower-case.
func checkHeader(name, value string) string {
	switch {
	case name == "":
		return "a header name is empty"
	case name != strings.ToLower(name):
		return fmt.Sprintf("header %q must be lower-case", name)
	case strings.HasPrefix(name, "x-agentpdp-"):
		return fmt.Sprintf("header %q is agentpdp's own", name)
	case reservedHeaders[name]:
		return fmt.Sprintf("header %q may not be set by policy", name)
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Sprintf("header name %q is not an HTTP token", name)
	}
	if !utf8.ValidString(value) || strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Sprintf("header %q: the value has a line break, NUL or invalid UTF-8", name)
	}
	return ""
}

// allowHeaders merges the headers of the enforced allow rules that fired
// (never modifying theirs). Two of them giving one header different values
// is a conflict: the caller denies rather than pick one.
func allowHeaders(hits []hit) (map[string]string, string) {
	var h map[string]string
	for i := range hits {
		r := &hits[i]
		if r.Effect != Allow || r.Shadow {
			continue
		}
		for k, v := range r.Headers {
			if old, ok := h[k]; ok && old != v {
				return nil, fmt.Sprintf("allow rules set header %q to different values", k)
			}
			if h == nil {
				h = make(map[string]string, len(r.Headers))
			}
			h[k] = v
		}
	}
	return h, ""
}

// lowerHeaders lower-cases the names of a rule's headers and checks them.
func lowerHeaders(h map[string]string) (map[string]string, string) {
	if len(h) == 0 {
		return nil, ""
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		k = strings.ToLower(k)
		if why := checkHeader(k, v); why != "" {
			return nil, why
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Sprintf("header %q is named twice", k)
		}
		out[k] = v
	}
	return out, ""
}
