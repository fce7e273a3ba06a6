package pdp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"go.yaml.in/yaml/v3"
)

// celRuleFile is the YAML form of a CEL rule file.
type celRuleFile struct {
	Rules []celRuleSpec `yaml:"rules"`
}

type celRuleSpec struct {
	ID        string   `yaml:"id"`
	Effect    Effect   `yaml:"effect"`
	Match     string   `yaml:"match"`
	Message   string   `yaml:"message"`
	Approvers []string `yaml:"approvers"`
	Min       int      `yaml:"min"`
	TTL       string   `yaml:"ttl"`
	// GrantTTL is how long an approval, once given, may be used.
	GrantTTL string `yaml:"grant_ttl"`
	Shadow   bool   `yaml:"shadow"`
	// Headers are set on the request an allow rule allows (Envoy door).
	Headers map[string]string `yaml:"headers"`
	// HeaderExpressions are headers whose values are CEL string
	// expressions, evaluated when the rule fires (after Kubernetes'
	// message/messageExpression pair).
	HeaderExpressions map[string]string `yaml:"header_expressions"`
	// Status is the HTTP status a deny rule answers with (Envoy door).
	Status int `yaml:"status"`
}

// ttlErr is ParseTTL's verdict alone, for the load-time checks.
func ttlErr(s string) error {
	_, err := ParseTTL(s)
	return err
}

type celRule struct {
	hit
	prg cel.Program
	// headerExprs compute header values when the rule fires.
	headerExprs []headerExpr
}

type headerExpr struct {
	name string
	prg  cel.Program
}

// hit is a rule that fired, before combining.
type hit struct {
	Reason
	Approvers []string
	Min       int
	TTL       string
	GrantTTL  string
	Headers   map[string]string // never modified: cached hits share it
	Status    int               // deny only
}

// celEnv is built once: declaring the input's Go types lets the checker
// reject an unknown field or a type error at load time.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(
			reflect.TypeOf(Agent{}), reflect.TypeOf(User{}), reflect.TypeOf(Delegation{}),
			reflect.TypeOf(Action{}), reflect.TypeOf(HTTP{}), reflect.TypeOf(Context{}),
			reflect.TypeOf(Source{}), reflect.TypeOf(Rate{}), reflect.TypeOf(ToolDefinition{}),
			ext.ParseStructTag("json"),
		),
		cel.Variable("agent", cel.ObjectType("pdp.Agent")),
		cel.Variable("user", cel.ObjectType("pdp.User")),
		cel.Variable("delegation", cel.ObjectType("pdp.Delegation")),
		cel.Variable("action", cel.ObjectType("pdp.Action")),
		cel.Variable("context", cel.ObjectType("pdp.Context")),
		ext.Strings(), ext.Lists(), ext.Sets(), ext.Math(), ext.Encoders(),
		ext.Bindings(), ext.TwoVarComprehensions(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
	)
})

// compileCEL compiles one rule file; every problem is reported with its
// YAML position (file:line:col of the expression text).
func compileCEL(file string, src []byte) ([]*celRule, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	var spec celRuleFile
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&spec); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, LocateYAMLError(file, src, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root)
	srcLines := strings.Split(string(src), "\n")
	var errs SourceErrors
	var rules []*celRule
	seen := map[string]bool{}
	for i, r := range spec.Rules {
		ruleNode, matchNode := celRuleNodes(&root, i)
		at := SourceError{File: file}
		if ruleNode != nil {
			at.Line, at.Col = ruleNode.Line, ruleNode.Column
		}
		bad := func(format string, a ...any) {
			e := at
			e.Msg = fmt.Sprintf(format, a...)
			errs = append(errs, e)
		}
		switch {
		case r.ID == "":
			bad("rule %d has no id", i+1)
			continue
		case seen[r.ID]:
			bad("rule id %q used twice", r.ID)
			continue
		case r.Effect != Allow && r.Effect != Deny && r.Effect != Approve:
			bad("rule %q: effect %q is not allow, deny or approve", r.ID, r.Effect)
			continue
		case ttlErr(r.TTL) != nil:
			bad("rule %q: ttl: %v", r.ID, ttlErr(r.TTL))
			continue
		case ttlErr(r.GrantTTL) != nil:
			bad("rule %q: grant_ttl: %v", r.ID, ttlErr(r.GrantTTL))
			continue
		case strings.TrimSpace(r.Match) == "":
			bad("rule %q has no match expression", r.ID)
			continue
		case r.Min < 0:
			bad("rule %q: min is negative", r.ID)
			continue
		case (len(r.Headers) > 0 || len(r.HeaderExpressions) > 0) && r.Effect != Allow:
			bad("rule %q: only allow rules may set headers", r.ID)
			continue
		case r.Status != 0 && r.Effect != Deny:
			bad("rule %q: only deny rules may set a status", r.ID)
			continue
		case r.Status != 0 && (r.Status < minDenyStatus || r.Status > maxDenyStatus):
			bad("rule %q: status %d is not an HTTP error status (400–599)", r.ID, r.Status)
			continue
		}
		headers, hbad := lowerHeaders(r.Headers)
		if hbad != "" {
			bad("rule %q: %s", r.ID, hbad)
			continue
		}
		exprs, eerrs := compileHeaderExprs(env, file, srcLines, ruleNode, at, r.ID, r.HeaderExpressions, headers)
		if len(eerrs) > 0 {
			errs = append(errs, eerrs...)
			continue
		}
		seen[r.ID] = true
		ast, iss := env.Compile(r.Match)
		if iss.Err() != nil {
			for _, e := range iss.Errors() {
				errs = append(errs, celErrorAt(file, srcLines, matchNode, at, e.Location.Line(), e.Location.Column(), e.Message))
			}
			continue
		}
		if !ast.OutputType().IsExactType(types.BoolType) && !ast.OutputType().IsExactType(types.DynType) {
			bad("rule %q: match must be a bool expression, not %s", r.ID, ast.OutputType())
			continue
		}
		prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			bad("rule %q: %v", r.ID, err)
			continue
		}
		rules = append(rules, &celRule{
			hit: hit{
				Reason:    Reason{Rule: file + "#" + r.ID, Effect: r.Effect, Message: r.Message, Shadow: r.Shadow},
				Approvers: r.Approvers, Min: r.Min, TTL: r.TTL, GrantTTL: r.GrantTTL, Headers: headers, Status: r.Status,
			},
			prg:         prg,
			headerExprs: exprs,
		})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rules, nil
}

// celErrorAt maps a position inside the CEL expression (line 1-based,
// col 0-based) to the YAML file.
func celErrorAt(file string, src []string, match *yaml.Node, fallback SourceError, line, col int, msg string) SourceError {
	e := SourceError{File: file, Line: fallback.Line, Col: fallback.Col, Msg: msg}
	if match == nil || line < 1 {
		return e
	}
	switch match.Style {
	case yaml.FoldedStyle:
		// Folding joined the source lines with spaces: walk the source to
		// find where the expression's offset falls.
		off := col
		for i, l := range strings.Split(match.Value, "\n") {
			if i+1 == line {
				break
			}
			off += len(l) + 1
		}
		indent := 0
		if match.Line < len(src) {
			indent = len(src[match.Line]) - len(strings.TrimLeft(src[match.Line], " "))
		}
		for i := match.Line; i < len(src); i++ {
			content := strings.TrimSpace(src[i])
			if off <= len(content) {
				e.Line, e.Col = i+1, indent+off+1
				break
			}
			off -= len(content) + 1
		}
	case yaml.LiteralStyle:
		// Block scalars start on the line after the indicator.
		e.Line = match.Line + line
		// The block's indentation is its first content line's.
		indent := 0
		if match.Line < len(src) {
			indent = len(src[match.Line]) - len(strings.TrimLeft(src[match.Line], " "))
		}
		e.Col = indent + col + 1
	default:
		e.Line = match.Line + line - 1
		e.Col = col + 1
		if line == 1 {
			e.Col = match.Column + col
			if match.Style == yaml.DoubleQuotedStyle || match.Style == yaml.SingleQuotedStyle {
				e.Col++
			}
		}
	}
	return e
}

// compileHeaderExprs compiles a rule's header_expressions, names checked
// like static headers (and not repeating one), each a string expression
// (or dyn, checked when it runs), errors located at the expression.
func compileHeaderExprs(env *cel.Env, file string, srcLines []string, ruleNode *yaml.Node, at SourceError, id string, src, static map[string]string) ([]headerExpr, []SourceError) {
	var out []headerExpr
	var errs []SourceError
	exprsNode := mapValueNode(ruleNode, "header_expressions")
	for _, name := range mapKeysInOrder(exprsNode, src) {
		node := mapValueNode(exprsNode, name)
		loc := at
		if node != nil {
			loc.Line, loc.Col = node.Line, node.Column
		}
		bad := func(format string, a ...any) {
			e := loc
			e.Msg = fmt.Sprintf("rule %q: ", id) + fmt.Sprintf(format, a...)
			errs = append(errs, e)
		}
		lower := strings.ToLower(name)
		if why := checkHeader(lower, ""); why != "" {
			bad("%s", why)
			continue
		}
		if _, dup := static[lower]; dup || slices.ContainsFunc(out, func(h headerExpr) bool { return h.name == lower }) {
			bad("header %q is named twice", lower)
			continue
		}
		ast, iss := env.Compile(src[name])
		if iss.Err() != nil {
			for _, e := range iss.Errors() {
				errs = append(errs, celErrorAt(file, srcLines, node, loc, e.Location.Line(), e.Location.Column(), fmt.Sprintf("rule %q: header %q: %s", id, lower, e.Message)))
			}
			continue
		}
		if t := ast.OutputType(); !t.IsExactType(types.StringType) && !t.IsExactType(types.DynType) {
			bad("header %q: the expression must give a string, not %s", lower, t)
			continue
		}
		prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			bad("header %q: %v", lower, err)
			continue
		}
		out = append(out, headerExpr{name: lower, prg: prg})
	}
	return out, errs
}

// mapKeysInOrder is m's keys in the order the mapping node lists them (so
// errors come out in file order), sorted when there is no node.
func mapKeysInOrder(node *yaml.Node, m map[string]string) []string {
	if node == nil || node.Kind != yaml.MappingNode || len(node.Content) != 2*len(m) {
		return slices.Sorted(maps.Keys(m))
	}
	keys := make([]string, 0, len(m))
	for j := 0; j < len(node.Content); j += 2 {
		keys = append(keys, node.Content[j].Value)
	}
	return keys
}

// mapValueNode is the value of key in a YAML mapping node, or nil.
func mapValueNode(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for j := 0; j+1 < len(m.Content); j += 2 {
		if m.Content[j].Value == key {
			return m.Content[j+1]
		}
	}
	return nil
}

func celRuleNodes(root *yaml.Node, i int) (rule, match *yaml.Node) {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, nil
	}
	rules := mapValueNode(root.Content[0], "rules")
	if rules == nil || rules.Kind != yaml.SequenceNode || i >= len(rules.Content) {
		return nil, nil
	}
	rule = rules.Content[i]
	return rule, mapValueNode(rule, "match")
}

// inputActivation resolves the five CEL variables straight from the Input,
// so evaluation builds no maps.
type inputActivation struct{ in *Input }

func (a inputActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "agent":
		return &a.in.Agent, true
	case "user":
		return &a.in.User, true
	case "delegation":
		return &a.in.Delegation, true
	case "action":
		return &a.in.Action, true
	case "context":
		return &a.in.Context, true
	}
	return nil, false
}

func (a inputActivation) Parent() interpreter.Activation { return nil }

// evalCEL appends the rules that fired. An error in one rule is returned
// after the others ran, so explain shows everything.
func evalCEL(rules []*celRule, in *Input, hits []hit) ([]hit, error) {
	act := inputActivation{in: in}
	var firstErr error
	for _, r := range rules {
		out, _, err := r.prg.Eval(act)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", r.Rule, err)
			}
			continue
		}
		b, ok := out.Value().(bool)
		if !ok {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: match evaluated to %v, not a bool", r.Rule, out.Type())
			}
			continue
		}
		if !b {
			continue
		}
		h := r.hit
		if len(r.headerExprs) > 0 {
			var err error
			if h.Headers, err = r.computeHeaders(act); err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", r.Rule, err)
				}
				continue
			}
		}
		hits = append(hits, h)
	}
	return hits, firstErr
}

// computeHeaders is the rule's static headers plus its evaluated
// header_expressions, in a fresh map (the static one is shared).
func (r *celRule) computeHeaders(act interpreter.Activation) (map[string]string, error) {
	h := make(map[string]string, len(r.Headers)+len(r.headerExprs))
	maps.Copy(h, r.Headers)
	for _, e := range r.headerExprs {
		out, _, err := e.prg.Eval(act)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", e.name, err)
		}
		v, ok := out.Value().(string)
		if !ok {
			return nil, fmt.Errorf("header %q: the expression gave %v, not a string", e.name, out.Type())
		}
		if why := checkHeader(e.name, v); why != "" {
			return nil, errors.New(why)
		}
		h[e.name] = v
	}
	return h, nil
}
