package pdp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is one policy test's outcome.
type TestResult struct {
	// Name is "file:line: name" for YAML cases, "package.test_name" for Rego.
	Name     string
	Pass     bool
	Detail   string
	Duration time.Duration
}

// RunTests runs the set's Rego test_ rules (OPA's tester, as `opa test`
// would) and its YAML cases (each through a whole Decide).
func RunTests(ctx context.Context, set *PolicySet) ([]TestResult, error) {
	var out []TestResult
	if len(set.regoTests) > 0 {
		rs, err := runRegoTests(ctx, set)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	p := New(set, Options{})
	for _, tc := range set.Tests {
		start := time.Now()
		in := *tc.Input
		d := p.Decide(ctx, &in)
		r := TestResult{Name: fmt.Sprintf("%s:%d: %s", tc.File, tc.Line, tc.Name), Pass: d.Effect == tc.Effect}
		var problems []string
		if d.Effect != tc.Effect {
			problems = append(problems, fmt.Sprintf("effect %s, want %s", d.Effect, tc.Effect))
		}
		for _, want := range tc.Rules {
			if !slices.ContainsFunc(d.Reasons, func(x Reason) bool { return x.Rule == want }) {
				r.Pass = false
				problems = append(problems, fmt.Sprintf("rule %s did not fire", want))
			}
		}
		if tc.Headers != nil && !maps.Equal(tc.Headers, d.Headers) && (len(tc.Headers) > 0 || len(d.Headers) > 0) {
			r.Pass = false
			problems = append(problems, fmt.Sprintf("headers %v, want %v", d.Headers, tc.Headers))
		}
		if tc.Status != 0 && d.Status != tc.Status {
			r.Pass = false
			problems = append(problems, fmt.Sprintf("status %d, want %d", d.Status, tc.Status))
		}
		if !r.Pass {
			r.Detail = strings.Join(problems, "; ") + "\n" + Explain(d)
		}
		r.Duration = time.Since(start)
		out = append(out, r)
	}
	return out, nil
}

func runRegoTests(ctx context.Context, set *PolicySet) ([]TestResult, error) {
	mods := make(map[string]*ast.Module, len(set.regoModules)+len(set.regoTests))
	maps.Copy(mods, set.regoModules)
	maps.Copy(mods, set.regoTests)
	txn, err := set.store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer set.store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetCompiler(ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)).
		SetStore(set.store).
		SetModules(mods).
		SetTimeout(10*time.Second).
		RunTests(ctx, txn)
	if err != nil {
		return nil, astErrors("", err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: strings.TrimPrefix(r.Package, "data.") + "." + r.Name, Pass: r.Pass(), Duration: r.Duration}
		if r.Location != nil {
			tr.Name = fmt.Sprintf("%s:%d: %s", r.Location.File, r.Location.Row, tr.Name)
		}
		switch {
		case r.Error != nil:
			tr.Detail = r.Error.Error()
		case r.Fail:
			tr.Detail = "test rule was false or undefined"
			if r.FailedAt != nil {
				tr.Detail = "failed at " + r.FailedAt.String()
			}
		}
		out = append(out, tr)
	}
	return out, nil
}

// Explain renders a decision for people: the effect, why it won, and every
// rule that fired.
func Explain(d Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "effect: %s\n", d.Effect)
	fmt.Fprintf(&b, "why:    %s\n", why(d))
	if d.Approval != nil {
		fmt.Fprintf(&b, "approval: %d of %s", d.Approval.Min, strings.Join(d.Approval.Approvers, ", "))
		if d.Approval.TTL != "" {
			fmt.Fprintf(&b, " within %s", d.Approval.TTL)
		}
		b.WriteString("\n")
	}
	if d.Status != 0 {
		fmt.Fprintf(&b, "status: %d (asked by the deny rules)\n", d.Status)
	}
	if len(d.Headers) > 0 {
		b.WriteString("headers set upstream:")
		for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
			fmt.Fprintf(&b, " %s: %s;", k, d.Headers[k])
		}
		b.WriteString("\n")
	}
	b.WriteString("rules that fired:\n")
	for _, r := range d.Reasons {
		shadow := ""
		if r.Shadow {
			shadow = " (shadow: logged, not enforced)"
		}
		fmt.Fprintf(&b, "  %-8s %s%s\n", r.Effect, r.Rule, shadow)
		if r.Message != "" {
			fmt.Fprintf(&b, "           %s\n", r.Message)
		}
	}
	if d.Shadow {
		fmt.Fprintf(&b, "shadow rules would have made it: %s\n", d.ShadowEffect)
	}
	fmt.Fprintf(&b, "decision %s, policy %s\n", d.ID, d.PolicyRevision)
	return b.String()
}

func why(d Decision) string {
	count := map[Effect]int{}
	for _, r := range d.Reasons {
		if !r.Shadow {
			count[r.Effect]++
		}
	}
	switch {
	case d.Effect == Deny && len(d.Reasons) > 0 && d.Reasons[len(d.Reasons)-1].Rule == "builtin#default-deny" && count[Deny] == 1:
		return "no rule allowed the call (default deny)"
	case d.Effect == Deny:
		return fmt.Sprintf("%d deny rule(s) fired; deny wins over approve (%d) and allow (%d)", count[Deny], count[Approve], count[Allow])
	case d.Effect == Approve:
		return fmt.Sprintf("no deny; %d approve rule(s) hold the call for a human, over %d allow", count[Approve], count[Allow])
	}
	return fmt.Sprintf("no deny or approve; %d allow rule(s) fired", count[Allow])
}
