package pdp

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A reload that leaves no policy file serves default deny, and says so.
func TestReloadToEmptySetWarns(t *testing.T) {
	dir := writeSet(t, map[string]string{"r.yaml": "rules:\n  - id: r\n    effect: allow\n    match: \"true\"\n"})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	p := New(set, Options{Logger: slog.New(slog.NewJSONHandler(&log, nil)), AllowUnknownAgents: true})
	if err := os.Remove(filepath.Join(dir, "r.yaml")); err != nil {
		t.Fatal(err)
	}
	p.reload(context.Background(), dir, nil)
	if d := p.Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}}); d.Effect != Deny {
		t.Errorf("an empty set decided %s", d.Effect)
	}
	if !strings.Contains(log.String(), `"level":"WARN","msg":"no policy files: every call is denied (default deny) until some arrive"`) {
		t.Errorf("no warning:\n%s", log.String())
	}
}
