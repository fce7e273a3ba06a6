package pdp

import "strings"

// Redacted replaces a redacted value in the decision log.
const Redacted = "[REDACTED]"

var redactedJSON = []byte(`"` + Redacted + `"`)

// DefaultRedact keeps credentials out of the decision log.
var DefaultRedact = []string{
	"action.http.headers.authorization",
	"action.http.headers.proxy-authorization",
	"action.http.headers.cookie",
	"action.http.headers.x-forwarded-client-cert",
}

// ParseRedactPaths turns dotted redaction paths (as in Options.Redact)
// into the form jcs.Redact takes, rooted at the input document.
func ParseRedactPaths(paths []string) [][]string {
	out := make([][]string, 0, len(paths))
	for _, p := range paths {
		p = strings.TrimPrefix(strings.TrimPrefix(p, "$."), "input.")
		if p == "" {
			continue
		}
		path := strings.Split(p, ".")
		if len(path) == 4 && path[0] == "action" && path[1] == "http" && path[2] == "headers" {
			path[3] = strings.ToLower(path[3]) // header names are lower-cased in the input
		}
		out = append(out, path)
	}
	return out
}
