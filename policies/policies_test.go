package policies

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOPATest runs the Rego tests exactly as `opa test policies/*.rego`
// does (OPA's own test runner, no agentpdp code in between).
func TestOPATest(t *testing.T) {
	files, err := filepath.Glob("*.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rego files: %v", err)
	}
	results, err := tester.Run(context.Background(), files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 10 {
		t.Fatalf("only %d Rego tests ran", len(results))
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s.%s: %v", r.Package, r.Name, r.Error)
		}
	}
}
