package pdp

import "strings"

// Redacted replaces a redacted value in the decision log.
const Redacted = "[REDACTED]"

// DefaultRedact keeps credentials out of the decision log.
var DefaultRedact = []string{
	"action.http.headers.authorization",
	"action.http.headers.proxy-authorization",
	"action.http.headers.cookie",
	"action.http.headers.x-forwarded-client-cert",
}

func parseRedactPaths(paths []string) [][]string {
	out := make([][]string, 0, len(paths))
	for _, p := range paths {
		p = strings.TrimPrefix(strings.TrimPrefix(p, "$."), "input.")
		if p != "" {
			out = append(out, strings.Split(p, "."))
		}
	}
	return out
}

// redactInput returns a copy of in with the paths replaced, copying only
// what it changes; changed is false when no path matched.
func redactInput(in *Input, paths [][]string) (*Input, bool) {
	if len(paths) == 0 {
		return in, false
	}
	out := *in
	changed := false
	for _, p := range paths {
		if len(p) < 3 {
			continue
		}
		rest := p[2:]
		switch p[0] + "." + p[1] {
		case "action.arguments":
			out.Action.Arguments, changed = redactMap(out.Action.Arguments, rest, changed)
		case "agent.claims":
			out.Agent.Claims, changed = redactMap(out.Agent.Claims, rest, changed)
		case "user.claims":
			out.User.Claims, changed = redactMap(out.User.Claims, rest, changed)
		case "delegation.constraints":
			out.Delegation.Constraints, changed = redactMap(out.Delegation.Constraints, rest, changed)
		case "action.http":
			switch {
			case rest[0] == "headers" && len(rest) == 2:
				out.Action.HTTP.Headers, changed = redactHeaders(out.Action.HTTP.Headers, rest[1], changed)
			case rest[0] == "body" && len(rest) >= 2:
				if m, ok := out.Action.HTTP.Body.(map[string]any); ok {
					out.Action.HTTP.Body, changed = redactMap(m, rest[1:], changed)
				}
			}
		}
	}
	return &out, changed
}

// redactMap replaces m[path...] ("*" matches every key), copying maps on
// the way down so the caller's input is never modified.
func redactMap(m map[string]any, path []string, changed bool) (map[string]any, bool) {
	if len(m) == 0 || len(path) == 0 {
		return m, changed
	}
	var cp map[string]any
	clone := func() {
		if cp == nil {
			cp = make(map[string]any, len(m))
			for k, v := range m {
				cp[k] = v
			}
		}
	}
	for k, v := range m {
		if path[0] != "*" && path[0] != k {
			continue
		}
		if len(path) == 1 {
			clone()
			cp[k] = Redacted
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			if nm, ch := redactMap(sub, path[1:], false); ch {
				clone()
				cp[k] = nm
			}
		}
	}
	if cp == nil {
		return m, changed
	}
	return cp, true
}

func redactHeaders(h map[string]string, name string, changed bool) (map[string]string, bool) {
	name = strings.ToLower(name)
	if _, ok := h[name]; !ok && name != "*" {
		return h, changed
	}
	cp := make(map[string]string, len(h))
	for k, v := range h {
		if k == name || name == "*" {
			v = Redacted
		}
		cp[k] = v
	}
	return cp, true
}
