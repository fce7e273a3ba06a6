package pdp

import (
	"github.com/prometheus/client_golang/prometheus"

	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/agentpdp/agentpdp/pdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func loadBasic(t testing.TB) *PolicySet {
	t.Helper()
	set, err := LoadDir(context.Background(), "testdata/basic")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func call(agent, user, tool string, args map[string]any) *Input {
	return &Input{
		Agent:   Agent{ID: agent},
		User:    User{ID: user, Groups: []string{"eng"}},
		Action:  Action{Kind: "mcp.tools/call", Server: "github", Tool: tool, Arguments: args},
		Context: Context{Time: t0},
	}
}

const reviewer = "spiffe://example.org/agent/reviewer"

func rules(d Decision) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Rule)
	}
	return out
}

func TestDecideEffects(t *testing.T) {
	p := New(loadBasic(t), Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		in     *Input
		effect Effect
		rule   string
	}{
		{"allow by inventory", call(reviewer, "alice", "create_issue", nil), Allow, "github.rego#allow:inventory"},
		{"approve destructive", call(reviewer, "alice", "delete_branch", nil), Approve, "github.rego#approve:destructive"},
		{"cel approve", call(reviewer, "alice", "transfer", map[string]any{"amount": 5000.0}), Approve, "payments.yaml#big-transfer"},
		{"cel int literal vs double", call(reviewer, "alice", "transfer", map[string]any{"amount": 10.0}), Allow, "github.rego#allow:inventory"},
		{"deny beats approve", func() *Input {
			in := call(reviewer, "alice", "transfer", map[string]any{"amount": 5000.0})
			in.Delegation.Constraints = map[string]any{"max_amount": 100.0}
			return in
		}(), Deny, "payments.yaml#over-constraint"},
		{"wrong group", func() *Input {
			in := call(reviewer, "bob", "create_issue", nil)
			in.User.Groups = []string{"sales"}
			return in
		}(), Deny, "github.rego#deny"},
		{"unknown agent", call("spiffe://example.org/agent/nobody", "alice", "create_issue", nil), Deny, "builtin#unknown-agent"},
		{"no agent", call("", "alice", "create_issue", nil), Deny, "builtin#no-agent"},
		{"expired agent", call("spiffe://example.org/agent/old", "", "create_issue", nil), Deny, "builtin#expired-agent"},
		{"default deny", func() *Input { in := call(reviewer, "alice", "x", nil); in.Action.Server = "slack"; return in }(), Deny, "builtin#default-deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(ctx, tc.in)
			if d.Effect != tc.effect || !slices.Contains(rules(d), tc.rule) {
				t.Fatalf("got %s %v, want %s with %s\n%s", d.Effect, rules(d), tc.effect, tc.rule, Explain(d))
			}
			if d.ID == "" || !strings.HasPrefix(d.PolicyRevision, "sha256:") {
				t.Fatalf("decision lacks id or revision: %+v", d)
			}
		})
	}
}

func TestApproveMergesApprovers(t *testing.T) {
	hits := []hit{
		{Reason: Reason{Rule: "a", Effect: Approve}, Approvers: []string{"group:sre"}, Min: 1, TTL: "2h"},
		{Reason: Reason{Rule: "b", Effect: Approve}, Approvers: []string{"group:finance", "group:sre"}, Min: 2, TTL: "30m"},
		{Reason: Reason{Rule: "c", Effect: Allow}},
	}
	e, appr, _, _ := combine(hits)
	if e != Approve || appr == nil || appr.Min != 2 || strings.Join(appr.Approvers, ",") != "group:finance,group:sre" || appr.TTL != "30m" {
		t.Fatalf("combine = %s %+v", e, appr)
	}
	if e, appr, reasons, _ := combine(nil); e != Deny || appr != nil || reasons[0].Rule != "builtin#default-deny" {
		t.Fatalf("empty combine = %s %+v %v", e, appr, reasons)
	}
}

func TestShadowRuleLoggedNotEnforced(t *testing.T) {
	p := New(loadBasic(t), Options{})
	in := call(reviewer, "alice", "create_issue", nil)
	in.Context.Rate.AgentCallsLastMinute = 2
	d := p.Decide(context.Background(), in)
	if d.Effect != Allow || !d.Shadow || d.ShadowEffect != Deny || !slices.Contains(rules(d), "payments.yaml#busy") {
		t.Fatalf("shadow: %+v", d)
	}
}

func TestRateLimitSlidingWindow(t *testing.T) {
	now := t0
	p := New(loadBasic(t), Options{CountRate: true, Now: func() time.Time { return now }})
	var last Decision
	for i := 1; i <= 4; i++ {
		in := call(reviewer, "alice", "create_issue", nil)
		last = p.Decide(context.Background(), in)
		if in.Context.Rate.AgentCallsLastMinute != i {
			t.Fatalf("call %d saw rate %d", i, in.Context.Rate.AgentCallsLastMinute)
		}
	}
	if last.Effect != Deny || !slices.Contains(rules(last), "builtin#rate-limit") {
		t.Fatalf("4th call in a minute with max 3: %s %v", last.Effect, rules(last))
	}
	now = now.Add(61 * time.Second)
	in := call(reviewer, "alice", "create_issue", nil)
	if d := p.Decide(context.Background(), in); d.Effect != Allow || in.Context.Rate.AgentCallsLastMinute != 1 {
		t.Fatalf("after a minute: %s rate %d", d.Effect, in.Context.Rate.AgentCallsLastMinute)
	}
}

// runYAMLCases loads a policy set made of files and runs its test cases.
func runYAMLCases(t *testing.T, files map[string]string) []TestResult {
	t.Helper()
	set, err := LoadDir(context.Background(), writeSet(t, files))
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunTests(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func writeSet(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const inv = "agents:\n  - id: a\n    allowed_actions: [\"s.*\"]\n"

func TestLoadErrorsAreLocated(t *testing.T) {
	for _, tc := range []struct {
		name, file, src, want string
	}{
		{"cel unknown field", "r.yaml", "rules:\n  - id: x\n    effect: deny\n    match: action.tooll == \"a\"\n", "r.yaml:4:18: undefined field 'tooll'"},
		{"cel block scalar", "r.yaml", "rules:\n  - id: x\n    effect: deny\n    match: |\n      action.tool == \"a\" &&\n        agent.nme == \"b\"\n", "r.yaml:6:14: undefined field 'nme'"},
		{"cel folded scalar", "r.yaml", "rules:\n  - id: x\n    effect: deny\n    match: >-\n      action.tool == \"a\" &&\n      agent.nme == \"b\"\n", "r.yaml:6:12: undefined field 'nme'"},
		{"cel type error", "r.yaml", "rules:\n  - id: x\n    effect: deny\n    match: action.tool + 1\n", "r.yaml:4:"},
		{"cel bad effect", "r.yaml", "rules:\n  - id: x\n    effect: maybe\n    match: \"true\"\n", "r.yaml:2:5: rule \"x\": effect \"maybe\""},
		{"cel unknown key", "r.yaml", "rules:\n  - id: x\n    efect: deny\n", "r.yaml:3: field efect not found"},
		{"rego syntax", "p.rego", "package agentpdp.p\n\ndeny contains \"x\" if {\n  input.a ==\n}\n", "p.rego:5:1: unexpected } token"},
		{"rego not a set", "p.rego", "package agentpdp.p\n\ndeny := true\n", "p.rego:3:1: deny must be a partial set"},
		{"rego unsafe var", "p.rego", "package agentpdp.p\n\ndeny contains x if { y == 1 }\n", "p.rego:3:"},
		{"inventory dup", "inventory.yaml", "agents:\n  - id: a\n  - id: a\n", "inventory.yaml:3: agent \"a\" listed twice"},
		{"yaml syntax", "r.yaml", "rules: [\n", "r.yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{tc.file: tc.src}
			if tc.file != "inventory.yaml" {
				files["inventory.yaml"] = inv
			}
			dir := writeSet(t, files)
			_, err := LoadDir(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tc.want)) {
				t.Fatalf("error %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

func TestTimeoutDenies(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "slow.rego": `package agentpdp.slow

allow contains "x" if {
	some i in numbers.range(1, 5000)
	some j in numbers.range(1, 5000)
	i * j < 0
}
`})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{Timeout: 5 * time.Millisecond})
	d := p.Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}})
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#timeout") {
		t.Fatalf("slow policy: %s %v", d.Effect, rules(d))
	}
}

func TestCELRuntimeErrorDenies(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "r.yaml": `rules:
  - id: ok
    effect: allow
    match: "true"
  - id: needs-amount
    effect: approve
    match: action.arguments.amount > 10
`})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	d := New(set, Options{}).Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}})
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#eval-error") {
		t.Fatalf("missing key: %s %v", d.Effect, rules(d))
	}
}

type failingLog struct{}

func (failingLog) Append(*decisionlog.Record) error { return errors.New("disk full") }

func TestLogFailureDenies(t *testing.T) {
	p := New(loadBasic(t), Options{Log: failingLog{}})
	d := p.Decide(context.Background(), call(reviewer, "alice", "create_issue", nil))
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#log-write-failed") {
		t.Fatalf("unwritable log: %s %v", d.Effect, rules(d))
	}
}

type memLog struct {
	mu   sync.Mutex
	recs []*decisionlog.Record
}

func (m *memLog) Append(r *decisionlog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *r // the PDP reuses r and its buffers
	c.Input, c.Result, c.Reasons = slices.Clone(r.Input), slices.Clone(r.Result), slices.Clone(r.Reasons)
	m.recs = append(m.recs, &c)
	return nil
}

func TestDecisionRecordRedactsAndBindsInput(t *testing.T) {
	log := &memLog{}
	p := New(loadBasic(t), Options{Log: log, Redact: []string{"action.arguments.token", "user.claims.*"}})
	in := call(reviewer, "alice", "create_issue", map[string]any{"token": "s3cret", "title": "hi"})
	in.User.Claims = map[string]any{"email": "alice@example.com"}
	d := p.Decide(context.Background(), in)
	if len(log.recs) != 1 {
		t.Fatalf("%d records", len(log.recs))
	}
	r := log.recs[0]
	if strings.Contains(string(r.Input), "s3cret") || strings.Contains(string(r.Input), "alice@example.com") || !strings.Contains(string(r.Input), `"title":"hi"`) {
		t.Fatalf("redaction: %s", r.Input)
	}
	if in.Action.Arguments["token"] != "s3cret" {
		t.Fatal("redaction modified the caller's input")
	}
	if r.DecisionID != d.ID || r.Effect != "allow" || r.Agent != reviewer || r.User != "alice" || r.InputHash != d.InputHash || r.PolicyRevision != d.PolicyRevision {
		t.Fatalf("record %+v vs decision %+v", r, d)
	}
	if !strings.Contains(string(r.Result), `"decision_id":"`+d.ID+`"`) {
		t.Fatalf("result: %s", r.Result)
	}
}

func TestCanonicalJSONOfInputMatchesJCS(t *testing.T) {
	in := call(reviewer, "alice", "x", map[string]any{"b": 1.5e21, "a": "\u2028<&>", "\U0001F600": true, "é": []any{nil, 0.1}})
	got, err := appendInput(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := jcs.Transform(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("not canonical:\n%s\n%s", got, want)
	}
}

func TestDecodeInputStrict(t *testing.T) {
	for src, want := range map[string]string{
		`{"action": {"kind": "http"}, "agnt": {}}`: `unknown field "agnt"`,
		"{\n  \"action\": {\"kind\": 3}\n}":        "2:",
		`{"action": {"kind": "http"}} {}`:          "trailing data",
		`{"action": `:                              "unexpected EOF",
	} {
		if _, err := DecodeInput([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeInput(%s) = %v, want %q", src, err, want)
		}
	}
}

func TestWatchReloadsAndKeepsLastGood(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "r.yaml": "rules:\n  - id: r\n    effect: allow\n    match: \"true\"\n"})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p := New(set, Options{Metrics: NewMetrics(reg)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 10)
	if err := p.Watch(ctx, dir, func(err error) { errs <- err }); err != nil {
		t.Fatal(err)
	}
	decide := func() Effect {
		return p.Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}}).Effect
	}
	if decide() != Allow {
		t.Fatal("initial policy should allow")
	}
	start := time.Now()
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - id: r\n    effect: deny\n    match: \"true\"\n"), 0o644)
	for decide() != Deny {
		if time.Since(start) > 2*time.Second {
			t.Fatal("edit not live within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rev := p.PolicySet().Revision
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - id: r\n    effect: deny\n    match: action.nope\n"), 0o644)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "r.yaml:4:") {
			t.Fatalf("reload error not located: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broken edit not reported")
	}
	if p.PolicySet().Revision != rev || decide() != Deny {
		t.Fatal("broken edit replaced the last good revision")
	}
	// The reload and the failed one are counted; the gauge names the
	// revision still serving. (onError runs after the count.)
	m := gathered(t, reg)
	if m["agentpdp_policy_reloads_total{}"] < 1 || m["agentpdp_policy_reload_errors_total{}"] < 1 || m["agentpdp_policy_revision_info{revision="+rev+"}"] != 1 {
		t.Errorf("reload metrics: %v", m)
	}
}

func TestRunTests(t *testing.T) {
	res, err := RunTests(context.Background(), loadBasic(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results: %+v", len(res), res)
	}
	for _, r := range res {
		if !r.Pass {
			t.Errorf("%s: %s", r.Name, r.Detail)
		}
	}
}

// Pruning the Rego input to what the policies read must never change what
// they decide: every set element matches with the full input.
func TestPrunedInputDecidesAsFull(t *testing.T) {
	set := loadBasic(t)
	inputs := []*Input{
		call(reviewer, "alice", "create_issue", nil),
		call(reviewer, "alice", "delete_branch", map[string]any{"x": 1.0}),
		func() *Input {
			in := call(reviewer, "bob", "create_issue", nil)
			in.User.Groups = []string{"sales"}
			return in
		}(),
		call("spiffe://example.org/agent/old", "", "create_issue", nil),
	}
	for _, in := range inputs {
		if a, ok := set.Inventory.Lookup(in.Agent.ID); ok {
			a.merge(&in.Agent)
		}
		pruned, err := set.rego.eval(context.Background(), time.Minute, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		full := *set.rego
		full.needs = allNeeds
		all, err := full.eval(context.Background(), time.Minute, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(pruned) != len(all) {
			t.Fatalf("pruned %v, full %v", pruned, all)
		}
		for i := range all {
			if pruned[i].Rule != all[i].Rule {
				t.Fatalf("pruned %v, full %v", pruned, all)
			}
		}
	}
	if set.rego.needs.all || set.rego.needs.want("context") {
		t.Fatalf("basic policies never read input.context, yet needs = %+v", set.rego.needs)
	}
}

// Decisions run concurrently, each with its own store read transaction.
func TestConcurrentDecide(t *testing.T) {
	p := New(loadBasic(t), Options{Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tool := "create_issue"
				want := Allow
				if i%2 == 1 {
					tool, want = "delete_branch", Approve
				}
				if d := p.Decide(context.Background(), call(reviewer, "alice", tool, nil)); d.Effect != want {
					t.Errorf("%s: %s", tool, Explain(d))
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestRegoCacheOnlyForDeterministicPolicies(t *testing.T) {
	if loadBasic(t).rego.cache == nil {
		t.Fatal("basic policies are deterministic but got no cache")
	}
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "p.rego": `package agentpdp.p

allow contains "even second" if {
	input.agent.id
	floor(time.now_ns() / 1000000000) % 2 == 0
}
`})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.rego.cache != nil {
		t.Fatal("a policy calling time.now_ns must not be cached")
	}
	// The decision follows context.time, call after call.
	p := New(set, Options{})
	for i := 0; i < 4; i++ {
		in := &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}, Context: Context{Time: t0.Add(time.Duration(i) * time.Second)}}
		want := Allow
		if i%2 == 1 {
			want = Deny
		}
		if d := p.Decide(context.Background(), in); d.Effect != want {
			t.Fatalf("second %d: %s, want %s", i, d.Effect, want)
		}
	}
}

func TestRefuseIsLogged(t *testing.T) {
	log := &memLog{}
	p := New(loadBasic(t), Options{Log: log})
	d := p.Refuse(context.Background(), &Input{Action: Action{Kind: "http"}}, Reason{Rule: "builtin#bad-request", Message: "garbage"})
	if d.Effect != Deny || d.ID == "" || len(log.recs) != 1 || log.recs[0].DecisionID != d.ID || log.recs[0].Reasons[0] != "builtin#bad-request" {
		t.Fatalf("refuse: %+v, %d records", d, len(log.recs))
	}
}

// Behind Envoy every request has its own x-request-id: a policy that reads
// only the method must still hit the result cache.
func TestRegoCacheIgnoresUnreadHeaders(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "p.rego": `package agentpdp.p

allow contains "get" if input.action.http.method == "GET"

deny contains "debug" if input.action.http.headers["x-debug"] == "1"
`})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	p := New(set, Options{})
	for i, tc := range []struct {
		rid, debug string
		want       Effect
	}{{"a", "", Allow}, {"b", "", Allow}, {"c", "1", Deny}, {"d", "", Allow}} {
		h := map[string]string{"x-request-id": tc.rid}
		if tc.debug != "" {
			h["x-debug"] = tc.debug
		}
		in := &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http", HTTP: HTTP{Method: "GET", Path: "/x", Headers: h}}}
		if d := p.Decide(context.Background(), in); d.Effect != tc.want {
			t.Fatalf("request %d: %s, want %s", i, d.Effect, tc.want)
		}
	}
	if n := len(set.rego.cache.entries); n != 2 {
		t.Fatalf("%d cache entries, want 2 (x-request-id must not be part of the key)", n)
	}
}

func TestDecisionIDsAreUUIDv7(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewDecisionID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 || seen[id] {
			t.Fatalf("%s: %v version %d variant %v dup %v", id, err, u.Version(), u.Variant(), seen[id])
		}
		seen[id] = true
		if sec, _ := u.Time().UnixTime(); time.Since(time.Unix(sec, 0)) > time.Minute {
			t.Fatalf("%s: timestamp %d is not now", id, sec)
		}
	}
}

func TestSlowCELDenies(t *testing.T) {
	dir := writeSet(t, map[string]string{"inventory.yaml": inv, "r.yaml": "rules:\n  - id: ok\n    effect: allow\n    match: \"true\"\n"})
	set, err := LoadDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// The clock moves a second per reading: any evaluation is "slow".
	now := t0
	p := New(set, Options{Timeout: time.Millisecond, Now: func() time.Time { now = now.Add(time.Second); return now }})
	d := p.Decide(context.Background(), &Input{Agent: Agent{ID: "a"}, Action: Action{Kind: "http"}})
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#timeout") {
		t.Fatalf("slow CEL: %s %v", d.Effect, rules(d))
	}
}

// An internal failure leaves nothing of what the rules asked for: a
// header set upstream, a hold, or a status chosen for their refusal.
func TestFailClosedDropsWhatRulesAsked(t *testing.T) {
	d := Decision{Effect: Allow, Approval: &ApprovalRequest{}, Headers: map[string]string{"x-team": "a"}, Status: 429,
		Reasons: []Reason{{Rule: "f#r", Effect: Allow}}}
	d.failClosed("builtin#log-write-failed", "disk full")
	if d.Effect != Deny || d.Approval != nil || d.Headers != nil || d.Status != 0 {
		t.Fatalf("after failClosed: %+v", d)
	}
	if got := rules(d); !slices.Equal(got, []string{"f#r", "builtin#log-write-failed"}) || d.Reasons[1].Message != "disk full" || d.Reasons[1].Effect != Deny {
		t.Fatalf("reasons %v", d.Reasons)
	}
}

// holder is a Holder that records what it saw and does what it is told.
type holder struct {
	calls int
	do    func(d *Decision) error
}

func (h *holder) Hold(_ context.Context, in *Input, d *Decision) error {
	h.calls++
	if in.Action.Digest == "" {
		return errors.New("no digest")
	}
	return h.do(d)
}

func TestHolderSeesOnlyApproveAndItsOutcomeIsLogged(t *testing.T) {
	log := &memLog{}
	h := &holder{do: func(d *Decision) error { d.Approval.ID, d.Approval.State = "appr-1", "pending"; return nil }}
	p := New(loadBasic(t), Options{Log: log, Holder: h})
	ctx := context.Background()
	if d := p.Decide(ctx, call(reviewer, "alice", "create_issue", nil)); d.Effect != Allow || h.calls != 0 {
		t.Fatalf("allow went through the holder: %s %d", d.Effect, h.calls)
	}
	d := p.Decide(ctx, call(reviewer, "alice", "delete_branch", nil))
	if d.Effect != Approve || h.calls != 1 || d.ApprovalID() != "appr-1" {
		t.Fatalf("approve: %s calls=%d id=%q", d.Effect, h.calls, d.ApprovalID())
	}
	rec := log.recs[len(log.recs)-1]
	if rec.ApprovalID != "appr-1" || !strings.Contains(string(rec.Result), `"id":"appr-1"`) || !strings.Contains(string(rec.Result), `"state":"pending"`) {
		t.Fatalf("logged: %s %s", rec.ApprovalID, rec.Result)
	}

	// A grant used: the holder turns it into allow, and that is logged.
	h.do = func(d *Decision) error {
		d.Effect = Allow
		d.Approval.ID, d.Approval.State = "appr-1", "consumed"
		return nil
	}
	if d := p.Decide(ctx, call(reviewer, "alice", "delete_branch", nil)); d.Effect != Allow || log.recs[len(log.recs)-1].Effect != "allow" {
		t.Fatalf("grant: %s", d.Effect)
	}

	// A holder that fails denies, naming why.
	h.do = func(*Decision) error { return errors.New("database is down") }
	d = p.Decide(ctx, call(reviewer, "alice", "delete_branch", nil))
	if d.Effect != Deny || !slices.Contains(rules(d), "builtin#approval-store") || d.Approval != nil {
		t.Fatalf("failing holder: %s %v", d.Effect, rules(d))
	}
}

func TestGrantTTLShortestAndValidated(t *testing.T) {
	e, appr, _, _ := combine([]hit{
		{Reason: Reason{Rule: "a", Effect: Approve}, GrantTTL: "10m"},
		{Reason: Reason{Rule: "b", Effect: Approve}, GrantTTL: "5m"},
	})
	if e != Approve || appr.GrantTTL != "5m" {
		t.Fatalf("%s %+v", e, appr)
	}
	dir := writeSet(t, map[string]string{"r.yaml": `rules:
  - id: hold
    effect: approve
    match: "true"
    grant_ttl: soon
`})
	if _, err := LoadDir(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "grant_ttl") {
		t.Fatalf("bad grant_ttl loaded: %v", err)
	}
}
