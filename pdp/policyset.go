package pdp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"go.yaml.in/yaml/v3"
)

// PolicySet is one immutable, compiled revision of a policy directory.
type PolicySet struct {
	// Revision is "sha256:<hex>" over every loaded file's path and bytes.
	Revision string
	// Dir is how the set was named when loaded (used in messages).
	Dir       string
	Files     []string
	Inventory *Inventory

	rego  *regoEngine
	cel   []*celRule
	store storage.Store

	// Kept for `agentpdp test`.
	regoModules map[string]*ast.Module // by path relative to Dir
	regoTests   map[string]*ast.Module
	Tests       []TestCase
}

// TestCase is one case of a *_test.yaml file: an input and the effect the
// whole policy set must reach for it.
type TestCase struct {
	File   string
	Line   int
	Name   string
	Input  *Input
	Effect Effect
	// Rules that must be among the reasons.
	Rules []string
	// Headers, when given, are exactly the headers the decision sets.
	Headers map[string]string
	// Status, when not 0, is the deny status the decision must carry.
	Status int
}

type testFile struct {
	Tests []struct {
		Name   string         `yaml:"name"`
		Input  map[string]any `yaml:"input"`
		Effect Effect         `yaml:"effect"`
		Rules  []string       `yaml:"rules"`
		// headers: {} asserts that none are set; absent, they are not checked.
		Headers map[string]string `yaml:"headers"`
		Status  int               `yaml:"status"`
	} `yaml:"tests"`
}

// LoadDir loads and compiles a policy directory.
func LoadDir(ctx context.Context, dir string) (*PolicySet, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	return LoadFS(ctx, os.DirFS(dir), dir)
}

// skipDir names folders that hold no policy: examples, fixtures, hidden.
func skipDir(name string) bool {
	return name == "examples" || name == "testdata" || name == "node_modules" || (strings.HasPrefix(name, ".") && name != ".")
}

// LoadFS loads a policy set from fsys; display prefixes file names in errors.
// Files: *.rego (modules; *_test.rego are tests), inventory.yaml, *_test.yaml
// (test cases), any other *.yaml / *.yml (CEL rules) but agentpdp.yaml (the
// server's config). Everything else is ignored. Any error fails the whole load: a set is all or nothing.
func LoadFS(ctx context.Context, fsys fs.FS, display string) (*PolicySet, error) {
	ps := &PolicySet{Dir: display, regoModules: map[string]*ast.Module{}, regoTests: map[string]*ast.Module{}}
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && skipDir(d.Name()) {
				return fs.SkipDir
			}
			return nil
		}
		if policyFile(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	h := sha256.New()
	var errs SourceErrors
	addErr := func(err error) {
		var se SourceError
		var ses SourceErrors
		switch {
		case errors.As(err, &ses):
			errs = append(errs, ses...)
		case errors.As(err, &se):
			errs = append(errs, se)
		default:
			errs = append(errs, SourceError{Msg: err.Error()})
		}
	}
	for _, rel := range files {
		src, err := fs.ReadFile(fsys, rel)
		if err != nil {
			return nil, err
		}
		h.Write([]byte(rel))
		h.Write([]byte{0})
		h.Write(src)
		h.Write([]byte{0})
		shown := joinDisplay(display, rel)
		base := path.Base(rel)
		switch {
		case strings.HasSuffix(rel, ".rego"):
			m, err := parseRego(shown, src)
			if err != nil {
				addErr(err)
				continue
			}
			if strings.HasSuffix(rel, "_test.rego") {
				ps.regoTests[rel] = m
			} else {
				ps.regoModules[rel] = m
			}
		case base == "inventory.yaml" || base == "inventory.yml":
			if ps.Inventory != nil {
				addErr(SourceError{File: shown, Msg: "a second inventory file"})
				continue
			}
			inv, err := ParseInventory(shown, src)
			if err != nil {
				addErr(err)
				continue
			}
			ps.Inventory = inv
		case strings.HasSuffix(base, "_test.yaml") || strings.HasSuffix(base, "_test.yml"):
			tcs, err := parseTests(shown, src)
			if err != nil {
				addErr(err)
				continue
			}
			ps.Tests = append(ps.Tests, tcs...)
		default:
			rules, err := compileCEL(rel, src)
			if err != nil {
				addErr(relocate(err, rel, shown))
				continue
			}
			ps.cel = append(ps.cel, rules...)
		}
		ps.Files = append(ps.Files, rel)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	ps.Revision = "sha256:" + hex.EncodeToString(h.Sum(nil))
	ps.store, err = newStore(ps.Inventory)
	if err != nil {
		return nil, err
	}
	ps.rego, err = compileRego(ctx, ps.regoModules, ps.store)
	if err != nil {
		return nil, err
	}
	return ps, nil
}

func policyFile(p string) bool {
	if b := path.Base(p); b == "agentpdp.yaml" || b == "agentpdp.yml" {
		return false // the server's config may sit beside its policies
	}
	switch path.Ext(p) {
	case ".rego", ".yaml", ".yml":
		return true
	}
	return false
}

func joinDisplay(display, rel string) string {
	if display == "" || display == "." {
		return rel
	}
	return filepath.ToSlash(filepath.Join(display, rel))
}

// relocate rewrites errors reported against the rule-id path (rel) so they
// name the file as the user gave it.
func relocate(err error, rel, shown string) error {
	var ses SourceErrors
	if errors.As(err, &ses) {
		out := make(SourceErrors, len(ses))
		for i, e := range ses {
			if e.File == rel {
				e.File = shown
			}
			out[i] = e
		}
		return out
	}
	var se SourceError
	if errors.As(err, &se) && se.File == rel {
		se.File = shown
		return se
	}
	return err
}

func parseTests(file string, src []byte) ([]TestCase, error) {
	var tf testFile
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, LocateYAMLError(file, src, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(src, &root)
	var out []TestCase
	for i, t := range tf.Tests {
		line := seqItemLine(&root, "tests", i)
		if t.Effect != Allow && t.Effect != Deny && t.Effect != Approve {
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("test %q: effect %q is not allow, deny or approve", t.Name, t.Effect)}
		}
		b, err := json.Marshal(t.Input)
		if err != nil {
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("test %q: %v", t.Name, err)}
		}
		in, err := DecodeInput(b)
		if err != nil {
			// The place is in JSON made from the YAML: only the test's line means anything.
			var se SourceError
			if errors.As(err, &se) {
				err = errors.New(se.Msg)
			}
			return nil, SourceError{File: file, Line: line, Msg: fmt.Sprintf("test %q: %v", t.Name, err)}
		}
		out = append(out, TestCase{File: file, Line: line, Name: t.Name, Input: in, Effect: t.Effect, Rules: t.Rules, Headers: t.Headers, Status: t.Status})
	}
	return out, nil
}

func seqItemLine(root *yaml.Node, key string, i int) int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return 0
	}
	m := root.Content[0]
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key && m.Content[k+1].Kind == yaml.SequenceNode && i < len(m.Content[k+1].Content) {
			return m.Content[k+1].Content[i].Line
		}
	}
	return 0
}

// DecodeInput parses an input document strictly: unknown fields, trailing
// data and wrong types are errors, so a typo never silently means "absent".
// Errors are SourceErrors at the line and column of the problem.
func DecodeInput(b []byte) (*Input, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var in Input
	if err := dec.Decode(&in); err != nil {
		return nil, jsonError(b, reflect.TypeFor[Input](), err)
	}
	// Not dec.More: it reports a stray '}' or ']' as no more data.
	if off := skipJSONSpace(b, dec.InputOffset()); off < int64(len(b)) {
		return nil, sourceErrorAt(b, off, "trailing data after the JSON document")
	}
	return &in, nil
}

// ApproveRulesWithoutApprovers lists the approve rules that name no
// approvers (as file:line rule), for `agentpdp check`: with no
// approvals.default_approvers, the calls they hold are denied. A Rego rule
// counts when its element is a message string or an object without an
// "approvers" key; an element built at run time cannot be judged here.
func (s *PolicySet) ApproveRulesWithoutApprovers() []string {
	var out []string
	for _, r := range s.cel {
		if r.Effect == Approve && len(r.Approvers) == 0 {
			out = append(out, r.Rule)
		}
	}
	files := make([]string, 0, len(s.regoModules))
	for f := range s.regoModules {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		m := s.regoModules[f]
		if !strings.HasPrefix(m.Package.Path.String(), "data.agentpdp.") {
			continue
		}
		for _, r := range m.Rules {
			if setName(r) != "approve" || r.Head.Key == nil {
				continue
			}
			switch v := r.Head.Key.Value.(type) {
			case ast.String:
				out = append(out, fmt.Sprintf("%s:%d approve", f, r.Location.Row))
			case ast.Object:
				if v.Get(ast.StringTerm("approvers")) == nil {
					out = append(out, fmt.Sprintf("%s:%d approve", f, r.Location.Row))
				}
			}
		}
	}
	return out
}
