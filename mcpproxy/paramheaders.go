package mcpproxy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// paramHeaderPrefix starts the custom request headers a 2026-07-28
// client mirrors a tool's x-mcp-header arguments into (SEP-2243).
const paramHeaderPrefix = "Mcp-Param-"

// ParamHeaders remembers, per upstream and tool, which arguments the
// tool's input schema marks x-mcp-header (as last listed through the
// door): what the Mcp-Param-* headers of a call to it must mirror.
type ParamHeaders struct {
	mu    sync.Mutex
	tools map[string]map[string][]paramHeader // server → tool → declarations
	// learned is when the door last listed a server's tools for an
	// unknown tool: calls naming tools that do not exist must not make
	// every request a listing upstream.
	learned map[string]time.Time
}

// learnEvery bounds how often the door lists an upstream's tools itself.
const learnEvery = 10 * time.Second

// mayLearn says whether the door may list server's tools now, and if so
// notes that it does.
func (p *ParamHeaders) mayLearn(server string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.learned[server]; ok && now.Sub(last) < learnEvery {
		return false
	}
	if p.learned == nil {
		p.learned = map[string]time.Time{}
	}
	p.learned[server] = now
	return true
}

// paramHeader: the header Mcp-Param-<name> mirrors the argument at path.
type paramHeader struct {
	name string
	path []string
}

// NewParamHeaders starts with no tool listed.
func NewParamHeaders() *ParamHeaders {
	return &ParamHeaders{tools: map[string]map[string][]paramHeader{}}
}

// observe records the x-mcp-header declarations of a tools/list result's
// tools (listedTools), each read as encoding/json reads it into {name
// string; inputSchema object}: one that cannot be (not an object, a name
// that is not a string, a schema that is not an object; null is as absent)
// leaves the whole list unrecorded.
func (p *ParamHeaders) observe(server string, tools []any) {
	type tool struct {
		name   string
		schema map[string]any
	}
	read := make([]tool, 0, len(tools))
	for _, it := range tools {
		if it == nil {
			continue // no name
		}
		t, ok := it.(map[string]any)
		if !ok {
			return
		}
		name, ok := optional[string](t, "name")
		if !ok {
			return
		}
		schema, ok := optional[map[string]any](t, "inputSchema")
		if !ok {
			return
		}
		if name != "" {
			read = append(read, tool{name, schema})
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tools[server] == nil {
		p.tools[server] = map[string][]paramHeader{}
	}
	for _, t := range read {
		var decls []paramHeader
		collectParamHeaders(t.schema, nil, &decls)
		p.tools[server][t.name] = decls
	}
}

// collectParamHeaders walks the chain of properties keywords (the only
// places SEP-2243 lets x-mcp-header stand).
func collectParamHeaders(schema map[string]any, path []string, out *[]paramHeader) {
	props, _ := schema["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		sub, _ := props[k].(map[string]any)
		if sub == nil {
			continue
		}
		at := append(append([]string(nil), path...), k)
		if h, ok := sub["x-mcp-header"].(string); ok && h != "" {
			*out = append(*out, paramHeader{name: h, path: at})
		}
		collectParamHeaders(sub, at, out)
	}
}

// check holds a tools/call's Mcp-Param-* headers against its body and
// returns the ones to forward, rebuilt from the body. A declared argument
// present in the body needs its header, a header needs its argument, and
// a header's (decoded) value must be the argument's; a header agentpdp
// cannot hold against a declaration (the tool was never listed, or
// declares no such header) is refused too: never forwarded unchecked.
func (p *ParamHeaders) check(server, tool string, args map[string]any, header http.Header) (map[string]string, error) {
	sent := map[string]string{} // folded suffix → value
	for k, v := range header {
		if len(k) > len(paramHeaderPrefix) && strings.EqualFold(k[:len(paramHeaderPrefix)], paramHeaderPrefix) && len(v) > 0 {
			sent[strings.ToLower(k[len(paramHeaderPrefix):])] = strings.Trim(v[0], " \t")
		}
	}
	var decls []paramHeader
	known := false
	if p != nil {
		p.mu.Lock()
		decls, known = p.tools[server][tool]
		p.mu.Unlock()
	}
	if !known {
		for k := range sent {
			return nil, &unlistedError{fmt.Sprintf("the %s%s header cannot be checked: tool %s is not among the tools this caller may list", paramHeaderPrefix, k, strconv.Quote(tool))}
		}
		return nil, nil
	}
	out := map[string]string{}
	for _, d := range decls {
		v, present := argAt(args, d.path)
		hv, ok := sent[strings.ToLower(d.name)]
		delete(sent, strings.ToLower(d.name))
		switch {
		case !present && !ok:
			continue
		case !present:
			return nil, fmt.Errorf("the %s%s header has no argument %s in the body", paramHeaderPrefix, d.name, strings.Join(d.path, "."))
		case !ok:
			return nil, fmt.Errorf("the %s%s header is missing: the body has argument %s", paramHeaderPrefix, d.name, strings.Join(d.path, "."))
		}
		want, err := paramString(v)
		if err != nil {
			return nil, fmt.Errorf("argument %s: %w", strings.Join(d.path, "."), err)
		}
		got, err := decodeParamHeader(hv)
		if err != nil {
			return nil, fmt.Errorf("the %s%s header: %w", paramHeaderPrefix, d.name, err)
		}
		if got != want {
			return nil, fmt.Errorf("the %s%s header %s does not match the body's %s", paramHeaderPrefix, d.name, strconv.Quote(got), strconv.Quote(want))
		}
		out[paramHeaderPrefix+d.name] = encodeParamHeader(want)
	}
	for k := range sent {
		return nil, fmt.Errorf("tool %s declares no %s%s header", strconv.Quote(tool), paramHeaderPrefix, k)
	}
	return out, nil
}

// unlistedError: the call's Mcp-Param headers name a tool whose
// declarations are not known here (not listed through this agentpdp since
// it started); the door may list the tools and check again.
type unlistedError struct{ msg string }

func (e *unlistedError) Error() string { return e.msg }

// argAt is the argument at path; absent and null are not present.
func argAt(args map[string]any, path []string) (any, bool) {
	var v any = args
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, v != nil
}

// paramString is a header's text for an argument: the spec admits
// strings, numbers and booleans.
func paramString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64, json.Number:
		b, err := jcs.Append(nil, x)
		return string(b), err
	}
	return "", fmt.Errorf("an x-mcp-header argument must be a string, number or boolean, not %T", v)
}

// decodeParamHeader reads a header value: =?base64?…?= is standard Base64
// (padding and alphabet checked); anything else, a prefix without its
// suffix included, is literal.
func decodeParamHeader(v string) (string, error) {
	if len(v) < len("=?base64??=") || !strings.HasPrefix(v, "=?base64?") || !strings.HasSuffix(v, "?=") {
		return v, nil
	}
	inner := v[len("=?base64?") : len(v)-len("?=")]
	b, err := base64.StdEncoding.Strict().DecodeString(inner)
	if err != nil {
		return "", fmt.Errorf("invalid Base64: %w", err)
	}
	return string(b), nil
}

// encodeParamHeader is what agentpdp sends for s: as is when it is
// printable ASCII without surrounding whitespace (and cannot be read as
// the Base64 form), else the Base64 form.
func encodeParamHeader(s string) string {
	plain := s == strings.Trim(s, " \t") && !strings.HasPrefix(s, "=?base64?")
	for i := 0; plain && i < len(s); i++ {
		plain = s[i] >= 0x20 && s[i] < 0x7f
	}
	if plain {
		return s
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
}
