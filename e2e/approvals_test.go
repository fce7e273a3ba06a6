package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/approvals/pgtest"
)

// reviewers are the approvals config's static reviewers: token = id + "-token".
// alice@example.com is the person check.json's agent acts for; pat is in
// platform, the team that owns that agent; mallory is not a security
// reviewer.
func reviewersYAML() string {
	var b strings.Builder
	b.WriteString("approvals:\n  reviewers:\n")
	for _, r := range []struct{ id, groups string }{
		{"sam", "[security]"}, {"alice@example.com", "[security]"}, {"pat", "[security, platform]"}, {"mallory", "[finance]"},
	} {
		fmt.Fprintf(&b, "    - {id: %q, groups: %s, token_sha256: %s}\n", r.id, r.groups, approvals.HashToken(r.id+"-token"))
	}
	return b.String()
}

// heldBody is the problem+json of a held request.
type heldBody struct {
	DecisionID string `json:"decision_id"`
	Effect     string `json:"effect"`
	Status     string `json:"status"`
	ApprovalID string `json:"approval_id"`
	StatusURL  string `json:"status_url"`
	RetryAfter int    `json:"retry_after"`
}

// TestEnvoyApprovalFlow: the example policies hold a merge for a security
// reviewer. The held request gets the approval id, a status URL and
// Retry-After; the identical request joins it; abusive reviews are refused
// and logged; a reviewer approves with the CLI; the identical request is
// then allowed once, and the next one is held again; every transition is
// on the verified hash chain.
func TestEnvoyApprovalFlow(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "decisions.log")
	p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\ndecision_log:\n  file: %s\nadmin:\n  addr: 127.0.0.1:0\nenvoy:\n  addr: 127.0.0.1:0\n%s", dir, logFile, reviewersYAML()))
	adminAddr := p.listenerAddr(t, "admin")
	apiAddr := p.listenerAddr(t, "approvals")
	client := envoyClient(t, p.doorAddr(t, "envoy"))
	req := exampleCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := checkHeld(ctx, t, client, req, apiAddr)
	if again := checkHeld(ctx, t, client, req, apiAddr); again.ApprovalID != first.ApprovalID {
		t.Fatalf("the identical request opened approval %s, want it to join %s", again.ApprovalID, first.ApprovalID)
	}
	if st := getStatus(t, first.StatusURL); st != "pending" {
		t.Fatalf("status %s", st)
	}

	cli := func(token string, args ...string) (string, error) {
		return approvalsCLI(ctx, "http://"+apiAddr, token, args...)
	}
	if out, err := cli("sam-token", "list"); err != nil || !strings.Contains(out, first.ApprovalID) || !strings.Contains(out, "tools/call github/merge_pull_request") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := cli("sam-token", "show", first.ApprovalID); err != nil || !strings.Contains(out, "pull_number: 42") || !strings.Contains(out, "inventory-requires-approval") {
		t.Fatalf("show: %v\n%s", err, out)
	}

	// Abuse, each refused by the API (and the CLI exits non-zero) and logged.
	for _, c := range []struct{ token, want string }{
		{"alice@example.com-token", "for themselves"},
		{"pat-token", "owns agent"},
		{"mallory-token", "not among the approvers"},
		{"nobody-token", "sign in as a reviewer"},
	} {
		if out, err := cli(c.token, "approve", first.ApprovalID); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s approving: %v %s", c.token, err, out)
		}
	}
	if code, body := postReview(t, apiAddr, "sam-token", first.ApprovalID, `{"digest":"sha256:`+strings.Repeat("0", 64)+`"}`); code != http.StatusForbidden || !strings.Contains(body, "digest does not match") {
		t.Errorf("approving another digest: %d %s", code, body)
	}

	if out, err := cli("sam-token", "approve", first.ApprovalID, "--comment", "merge window is open"); err != nil || !strings.Contains(out, "approved") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if st := getStatus(t, first.StatusURL); st != "approved" {
		t.Fatalf("status after approval: %s", st)
	}

	// The identical request, once.
	resp, err := client.Check(ctx, req)
	must(t, err)
	if resp.GetStatus().GetCode() != int32(code.Code_OK) || resp.GetOkResponse() == nil {
		t.Fatalf("retry after approval: %v", resp)
	}
	if got := resp.GetDynamicMetadata().AsMap()["approval_id"]; got != first.ApprovalID {
		t.Errorf("the allowed retry's metadata names approval %v, want %s", got, first.ApprovalID)
	}
	if next := checkHeld(ctx, t, client, req, apiAddr); next.ApprovalID == first.ApprovalID {
		t.Fatal("a used grant allowed a second request")
	}
	if st := getStatus(t, first.StatusURL); st != "consumed" {
		t.Fatalf("status after use: %s", st)
	}
	mb := httpGet(t, "http://"+adminAddr+"/metrics")
	for _, want := range []string{"\nagentpdp_approvals_pending 1\n", `agentpdp_approval_events_total{event="requested"} 2`, `agentpdp_approval_events_total{event="approved"} 1`, `agentpdp_approval_events_total{event="consumed"} 1`} {
		if !strings.Contains(mb, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	p.stop(t)
	verifyLog(t, logFile)
	got, _ := approvalStory(t, logFile, first.ApprovalID, "spiffe://example.org/agent/code-reviewer", "alice@example.com")
	want := "approval.requested decision:approve decision:approve approval.review_refused:alice@example.com approval.review_refused:pat " +
		"approval.review_refused:mallory approval.review_refused:sam approval.reviewed:sam approval.approved approval.consumed decision:allow"
	if got != want {
		t.Errorf("the log's story of the approval:\n got %s\nwant %s", got, want)
	}
}

// checkHeld sends req, which the door must hold for a reviewer: the
// problem+json answer names the approval, Retry-After and the status URL
// on the approvals API at apiAddr.
func checkHeld(ctx context.Context, t *testing.T, client authv3.AuthorizationClient, req *authv3.CheckRequest, apiAddr string) heldBody {
	t.Helper()
	resp, err := client.Check(ctx, req)
	must(t, err)
	dr := resp.GetDeniedResponse()
	if dr == nil || resp.GetStatus().GetCode() != int32(code.Code_PERMISSION_DENIED) {
		t.Fatalf("want held, got %v", resp)
	}
	var b heldBody
	must(t, json.Unmarshal([]byte(dr.GetBody()), &b))
	hdr := headerMap(dr.GetHeaders())
	if b.Effect != "approve" || b.Status != "approval_pending" || b.ApprovalID == "" || b.RetryAfter != 30 ||
		hdr["retry-after"] != "30" || hdr["content-type"] != "application/problem+json" ||
		b.StatusURL != "http://"+apiAddr+"/v1/approvals/"+b.ApprovalID+"/status" {
		t.Fatalf("held answer %+v headers %v", b, hdr)
	}
	return b
}

func getStatus(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	defer resp.Body.Close()
	var s struct{ State string }
	must(t, json.NewDecoder(resp.Body).Decode(&s))
	return s.State
}

func postReview(t *testing.T, addr, token, id, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/approvals/"+id+"/approve", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

// TestMCPApprovalStory: an agent acting for alice writes .env through the
// MCP proxy in front of server-filesystem (a desktop client's stdio
// config). The call is held, with progress, until sam, a security
// reviewer, approves it with the CLI; then it runs, once. The identical
// call afterwards is held again and, unapproved, answered pending. The log
// verifies and tells the story: agent, person and reviewer.
func TestMCPApprovalStory(t *testing.T) {
	dir := peersDir(t)
	sandbox := t.TempDir()
	must(t, os.WriteFile(filepath.Join(sandbox, ".env"), []byte("API_KEY=old\n"), 0o600))
	data := t.TempDir()
	logFile := filepath.Join(data, "decisions.log")
	cfgFile := filepath.Join(data, "agentpdp.yaml")
	must(t, os.WriteFile(cfgFile, []byte(reviewersYAML()), 0o600))
	apiAddr := freeAddr(t)
	envFile := filepath.Join(sandbox, ".env")
	write := clientStep{"op": "callTool", "name": "write_file", "progress": true, "arguments": map[string]any{"path": envFile, "content": "API_KEY=new\n"}}
	plan := map[string]any{
		"transport": "stdio", "command": agentpdpBin,
		"env":   map[string]string{"AGENTPDP_APPROVALS_ADDR": apiAddr},
		"args":  fsApprovalArgs(dir, cfgFile, fsPolicy(t, sandbox), sandbox, data, logFile, "5s"),
		"steps": []clientStep{write, write},
	}
	done := startNodeClient(t, "client-v1.mjs", plan, 2*time.Minute)

	// The held call shows up in the reviewers' API; sam approves it.
	id := awaitPending(t, apiAddr)
	if b, _ := os.ReadFile(envFile); string(b) != "API_KEY=old\n" {
		t.Fatalf("the held write happened before approval: %q", b)
	}
	if out, err := approvalsCLI(context.Background(), "http://"+apiAddr, "sam-token", "approve", id, "--comment", "rotating the key"); err != nil {
		t.Fatalf("approve: %v %s", err, out)
	}

	r := <-done
	if r.err != nil || len(r.res) != 3 || r.res[2]["op"] != "done" {
		t.Fatalf("client: %v\n%s", r.err, r.out)
	}
	first, replay := r.res[0], r.res[1]
	if isError(first) || first["ok"] != true {
		t.Fatalf("the approved write: %v", first)
	}
	if p, _ := first["progress"].([]any); len(p) == 0 {
		t.Errorf("no progress while held: %v", first)
	}
	if b, _ := os.ReadFile(envFile); string(b) != "API_KEY=new\n" {
		t.Fatalf(".env after the approved write: %q", b)
	}
	if !isError(replay) || !strings.Contains(text(replay), "waiting for a person") {
		t.Fatalf("the replay: %v", replay)
	}

	verifyLog(t, logFile)
	story, _ := approvalStory(t, logFile, id, "spiffe://example.org/agent/desk", "alice@example.com")
	want := "approval.requested decision:approve approval.reviewed:sam approval.approved approval.consumed decision:allow"
	if got := story; got != want {
		t.Errorf("the log's story:\n got %s\nwant %s", got, want)
	}
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// approvalStory is what the decision log says happened to approval id
// ("" for every approval), a word per record: its event, or decision:EFFECT,
// with :REVIEWER when a reviewer acted. Each record must name the agent and
// the person; recs are the records told.
func approvalStory(t *testing.T, logFile, id, agent, user string) (story string, recs []map[string]any) {
	t.Helper()
	var words []string
	for _, rec := range logRecords(t, logFile) {
		if aid, _ := rec["approval_id"].(string); aid == "" || (id != "" && aid != id) {
			continue
		}
		if rec["agent"] != agent || rec["user"] != user {
			t.Errorf("record without agent %s and person %s: %v", agent, user, rec)
		}
		ev, _ := rec["event"].(string)
		if ev == "" {
			ev = "decision:" + rec["effect"].(string)
		}
		res, _ := rec["result"].(map[string]any)
		if rv, ok := res["reviewer"].(map[string]any); ok {
			ev += ":" + rv["id"].(string)
		}
		words = append(words, ev)
		recs = append(recs, rec)
	}
	return strings.Join(words, " "), recs
}

// holdEchoes is an allow-all policy set whose rule holds the calls match
// selects for a security reviewer, and a config with reviewersYAML.
func holdEchoes(t *testing.T, match string) (policies, config string) {
	t.Helper()
	policies = allowAll(t)
	must(t, os.WriteFile(filepath.Join(policies, "hold.yaml"), fmt.Appendf(nil, "rules:\n  - id: held\n    effect: approve\n    match: %s\n    message: a security reviewer looks first\n    approvers: [group:security]\n", strconv.Quote(match)), 0o644))
	config = filepath.Join(t.TempDir(), "agentpdp.yaml")
	must(t, os.WriteFile(config, []byte(reviewersYAML()), 0o600))
	return policies, config
}

// fsApprovalArgs are `agentpdp mcp`'s arguments for the approval stories:
// stdio in front of server-filesystem (from the peers in dir) on sandbox,
// the desk agent acting for alice@example.com, a held call held for hold.
func fsApprovalArgs(dir, config, policies, sandbox, data, logFile, hold string) []string {
	fsServer := peerServer(dir, "server-filesystem")
	return []string{"mcp", "--config", config, "--policies", policies, "--data-dir", data, "--decision-log", logFile, "--hold-timeout", hold,
		"--agent", "spiffe://example.org/agent/desk", "--user", "alice@example.com", "--server", "fs",
		"--", "node", fsServer, sandbox}
}

// approvalsCLI runs `agentpdp approvals ARGS` against the API at url as
// the reviewer whose token is token.
func approvalsCLI(ctx context.Context, url, token string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, agentpdpBin, append([]string{"approvals"}, args...)...)
	cmd.Env = append(os.Environ(), "AGENTPDP_APPROVALS_URL="+url, "AGENTPDP_REVIEWER_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// awaitPending waits for a pending approval to show in the API at addr
// and returns its id.
func awaitPending(t *testing.T, addr string) string {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if id := firstPending(t, addr); id != "" {
			return id
		}
	}
	t.Fatal("no held call reached the approvals API")
	return ""
}

// exampleCheck is policies/examples/check.json: the code-review agent,
// acting for alice@example.com, merges a pull request, which the example
// policies hold for a security reviewer.
func exampleCheck(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	raw, err := os.ReadFile("../policies/examples/check.json")
	must(t, err)
	var req authv3.CheckRequest
	must(t, protojson.Unmarshal(raw, &req))
	return &req
}

// firstPending is the id of the first pending approval, or "" (also when
// the API is not up yet).
func firstPending(t *testing.T, addr string) string {
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/approvals?state=pending", nil)
	req.Header.Set("Authorization", "Bearer sam-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out struct{ Approvals []struct{ ID string } }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Approvals) == 0 {
		return ""
	}
	return out.Approvals[0].ID
}

// TestMCPStatelessApprovalByURLElicitation: a 2026-07-28 client (v2 SDK)
// that declared URL-mode elicitation calls a held tool of a stateless
// server. Still pending, it gets an InputRequiredResult sending the
// person to the approval page, with agentpdp's requestState; its retries
// are decided as the same call; once a reviewer approves, the retry uses
// the grant and reaches the server without agentpdp's state. A forged
// state and one issued for another call are refused and logged.
func TestMCPStatelessApprovalByURLElicitation(t *testing.T) {
	upstream := startServerV2(t)
	pol, cfg := holdEchoes(t, `action.tool == "echo" && string(action.arguments.message).contains("deploy")`)
	url, p, logFile := startMCPHTTP(t, pol, upstream, "--config", cfg, "--hold-timeout", "300ms")
	apiAddr := p.listenerAddr(t, "approvals")

	done := startNodeClient(t, "client-v2.mjs", map[string]any{"url": url, "capabilities": map[string]any{"elicitation": map[string]any{"url": map[string]any{}}},
		"steps": []clientStep{{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "deploy now"}}}}, time.Minute)
	id := awaitPending(t, apiAddr)
	// Let a pending answer and the client's retry happen before approving.
	p.waitLineN(t, map[string]any{"msg": "call held for approval", "approval_id": id}, 2)
	if code, body := postReview(t, apiAddr, "sam-token", id, `{"comment":"ok"}`); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	res := (<-done).res
	if len(res) != 2 || text(res[0]) != "echo: deploy now" {
		t.Fatalf("client: %v", res)
	}
	if el := fmt.Sprint(res[0]["elicited"]); !strings.Contains(el, "url:http://"+apiAddr+"/approvals/"+id) {
		t.Errorf("elicited %s, want the approval page", el)
	}

	// A raw client: one held call gets agentpdp's requestState.
	post := func(body string) string {
		return postMCP(t, url, body, map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}).body
	}
	call := func(msg, state string) string {
		extra := ""
		if state != "" {
			extra = fmt.Sprintf(`,"requestState":%q,"inputResponses":{"io.agentpdp/approval":{"action":"accept"}}`, state)
		}
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":%q}%s,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}}`, msg, extra)
	}
	body := post(call("deploy tomorrow", ""))
	i := strings.Index(body, `"requestState":"agentpdp.v1.`)
	if i < 0 || !strings.Contains(body, `"resultType":"input_required"`) {
		t.Fatalf("held raw call: %s", body)
	}
	state := body[i+len(`"requestState":"`):]
	state = state[:strings.IndexByte(state, '"')]
	if body := post(call("deploy tomorrow", state[:len(state)-2]+"xx")); !strings.Contains(body, "-32003") || !strings.Contains(body, "does not verify") {
		t.Errorf("forged requestState: %s", body)
	}
	if body := post(call("deploy elsewhere", state)); !strings.Contains(body, "another call") {
		t.Errorf("requestState of another call: %s", body)
	}

	verifyLog(t, logFile)
	var rules []string
	echoes := map[string]int{}
	for _, r := range decisions(t, logFile) {
		in, _ := r["input"].(map[string]any)
		act, _ := in["action"].(map[string]any)
		if args, _ := act["arguments"].(map[string]any); args["message"] == "deploy now" {
			echoes[r["effect"].(string)]++
		}
		if rs, _ := r["reasons"].([]any); len(rs) > 0 {
			if s := fmt.Sprint(rs[0]); strings.Contains(s, "request-state") {
				rules = append(rules, s)
			}
		}
	}
	if echoes["allow"] != 1 || echoes["approve"] < 2 {
		t.Errorf("decisions on the held call: %v (want several holds, then one allow)", echoes)
	}
	if strings.Join(rules, " ") != "builtin#bad-request-state builtin#foreign-request-state" {
		t.Errorf("refusals logged: %v", rules)
	}
}

// TestMCPHeldCallSurvivesRestart: agentpdp stops while a call is held.
// The client is answered pending (not dropped); the approval survives in
// the store; after the restart a reviewer approves it and the identical
// call, retried, runs.
func TestMCPHeldCallSurvivesRestart(t *testing.T) {
	upstream := startEverything(t)
	pol, cfg := holdEchoes(t, `action.tool == "echo"`)
	data := t.TempDir()
	logFile := filepath.Join(data, "decisions.log")
	start := func() (*proc, string, string) {
		url, p := startMCPHTTPIn(t, data, logFile, pol, upstream, "--config", cfg, "--hold-timeout", "1m")
		return p, url, p.listenerAddr(t, "approvals")
	}
	echo := clientStep{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "after the restart"}}
	p, url, api := start()
	done := startNodeClient(t, "client-v1.mjs", map[string]any{"transport": "http", "url": url, "steps": []clientStep{echo}}, time.Minute)
	id := awaitPending(t, api)
	p.waitLine(t, map[string]any{"msg": "call held for approval", "approval_id": id})
	p.stop(t)
	res := (<-done).res
	if len(res) != 2 || !isError(res[0]) || !strings.Contains(text(res[0]), "waiting for a person") || !strings.Contains(text(res[0]), id) {
		t.Fatalf("the held call when agentpdp stopped: %v", res)
	}

	p, url, api = start()
	if got := firstPending(t, api); got != id {
		t.Fatalf("after the restart the pending approval is %q, want %s", got, id)
	}
	if code, body := postReview(t, api, "sam-token", id, `{}`); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	res = runClient(t, map[string]any{"transport": "http", "url": url, "steps": []clientStep{echo}})
	if isError(res[0]) || !strings.Contains(text(res[0]), "after the restart") {
		t.Fatalf("the retry after approval: %v", res[0])
	}
	p.stop(t)
	verifyLog(t, logFile)
}

// TestTwoReplicasOnePostgres: two agentpdp processes share a PostgreSQL
// approval store. A request held by one is approved through the other's
// API; then 16 identical retries race through both doors and exactly one
// is allowed.
func TestTwoReplicasOnePostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	req := exampleCheck(t)
	type replica struct {
		client authv3.AuthorizationClient
		api    string
		log    string
	}
	var reps []replica
	for range 2 {
		dir := t.TempDir()
		logFile := filepath.Join(dir, "decisions.log")
		p := startAgentpdp(t, fmt.Sprintf("data_dir: %s\ndecision_log:\n  file: %s\nadmin:\n  addr: \"off\"\nenvoy:\n  addr: 127.0.0.1:0\n%s  store: postgres\n  postgres_dsn: %q\n", dir, logFile, reviewersYAML(), dsn))
		api := p.listenerAddr(t, "approvals")
		reps = append(reps, replica{envoyClient(t, p.doorAddr(t, "envoy")), api, logFile})
		t.Cleanup(func() { p.stop(t); verifyLog(t, logFile) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held := checkHeld(ctx, t, reps[0].client, req, reps[0].api)
	// The other replica joins the same pending approval.
	if joined := checkHeld(ctx, t, reps[1].client, req, reps[1].api); joined.ApprovalID != held.ApprovalID {
		t.Fatalf("replica 2 opened %s, want it to join %s", joined.ApprovalID, held.ApprovalID)
	}
	if code, body := postReview(t, reps[1].api, "sam-token", held.ApprovalID, `{}`); code != 200 {
		t.Fatalf("approve through replica 2: %d %s", code, body)
	}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	startRace := make(chan struct{})
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startRace
			resp, err := reps[i%2].client.Check(ctx, req)
			if err != nil {
				t.Error(err)
				return
			}
			if resp.GetStatus().GetCode() == int32(code.Code_OK) {
				allowed.Add(1)
			}
		}()
	}
	close(startRace)
	wg.Wait()
	if n := allowed.Load(); n != 1 {
		t.Fatalf("%d of 16 racing retries were allowed by one grant, want exactly 1", n)
	}
}

// TestMCPBridgedApprovalByURLElicitation: the same held call from a
// 2026-07-28 client, through the bridge to a stateful-only server
// (server-everything): pending is an InputRequiredResult with agentpdp's
// requestState, and once approved the retry reaches the server.
func TestMCPBridgedApprovalByURLElicitation(t *testing.T) {
	upstream := startEverything(t)
	pol, cfg := holdEchoes(t, `action.tool == "echo" && string(action.arguments.message).contains("deploy")`)
	url, p, logFile := startMCPHTTP(t, pol, upstream, "--upstream-stateful", "--config", cfg, "--hold-timeout", "300ms")
	apiAddr := p.listenerAddr(t, "approvals")
	done := startNodeClient(t, "client-v2.mjs", map[string]any{"url": url, "capabilities": map[string]any{"elicitation": map[string]any{"url": map[string]any{}}},
		"steps": []clientStep{{"op": "callTool", "name": "echo", "arguments": map[string]any{"message": "deploy through the bridge"}}}}, time.Minute)
	id := awaitPending(t, apiAddr)
	p.waitLineN(t, map[string]any{"msg": "call held for approval", "approval_id": id}, 2)
	if code, body := postReview(t, apiAddr, "sam-token", id, `{}`); code != 200 {
		t.Fatalf("approve: %d %s", code, body)
	}
	r := <-done
	if len(r.res) != 2 || !strings.Contains(text(r.res[0]), "deploy through the bridge") || isError(r.res[0]) {
		t.Fatalf("client: %v\n%s", r.res, r.out)
	}
	if el := fmt.Sprint(r.res[0]["elicited"]); !strings.Contains(el, "url:http://"+apiAddr+"/approvals/"+id) {
		t.Errorf("elicited %s, want the approval page", el)
	}
	story, _ := approvalStory(t, logFile, id, "tester", "bob@example.com")
	if !strings.HasSuffix(story, "approval.approved approval.consumed decision:allow") || !strings.HasPrefix(story, "approval.requested decision:approve decision:approve") {
		t.Errorf("the log's story: %s", story)
	}
	verifyLog(t, logFile)
}
