package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/mcpmsg"
)

// DefaultHoldTimeout is how long a held call waits for its reviewers
// before it is answered pending (DESIGN §4).
const DefaultHoldTimeout = 50 * time.Second

// progressEvery is how often a held call with a progress token hears that
// it is still waiting (keeping the client's request timeout from firing).
var progressEvery = 10 * time.Second

// hold waits for the approval a tools/call needs. Approved: the call is
// decided again (the decision uses the grant, or a later deny wins) and
// forwarded. Denied or expired: refused. Still pending at hold_timeout, or
// the session or agentpdp stopping: answered pending, so that the model
// retries the identical call later and the approval, kept in the store,
// is never lost with the connection.
func (s *Session) hold(ctx context.Context, m *mcpmsg.Message, raw []byte, key string, in *pdp.Input, d pdp.Decision) {
	id := d.ApprovalID()
	timeout := s.opts.HoldTimeout
	if timeout <= 0 {
		timeout = DefaultHoldTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-s.opts.Stop:
			cancel()
		case <-hctx.Done():
		}
	}()
	s.log.Info("call held for approval", "approval_id", id, "decision_id", d.ID, "tool", in.Action.Tool)

	type waited struct {
		a   *approvals.Approval
		err error
	}
	done := make(chan waited, 1)
	go func() {
		a, err := s.opts.Approvals.Wait(hctx, id)
		done <- waited{a, err}
	}()
	token := progressToken(m)
	var tick <-chan time.Time
	if token != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		tick = t.C
		s.progress(token, 0, key, id)
	}
	var w waited
	for n := 1; ; n++ {
		select {
		case w = <-done:
		case <-tick:
			s.progress(token, n, key, id)
			continue
		}
		break
	}
	switch {
	case w.err != nil || w.a == nil || w.a.State == approvals.Pending:
		if w.err != nil && hctx.Err() == nil {
			s.log.Error("waiting for approval failed; answering pending", "approval_id", id, "error", w.err)
		}
		if res, ok := s.inputRequired(m, in, id); ok {
			s.answerKey(key, res)
			return
		}
		s.answerKey(key, refusal(m, &d, true))
	case w.a.State == approvals.Approved:
		// Decided again, now: the grant is used by this decision, or a
		// deny that fired since wins.
		in.Context.Time = time.Time{}
		d2 := s.opts.Decider.Decide(ctx, in)
		if d2.Effect != pdp.Allow {
			s.answerKey(key, refusal(m, &d2, d2.Effect == pdp.Approve))
			return
		}
		s.forward(ctx, m, raw, key)
	default:
		why := fmt.Sprintf("approval %s was %s", id, w.a.State)
		for _, r := range w.a.Reviews {
			if r.Verdict == approvals.VerdictDeny {
				why = fmt.Sprintf("%s denied it (approval %s)", r.By, id)
				if r.Comment != "" {
					why += ": " + r.Comment
				}
			}
		}
		d.Effect = pdp.Deny
		d.Reasons = append(d.Reasons, pdp.Reason{Rule: "builtin#approval-" + string(w.a.State), Effect: pdp.Deny, Message: why})
		s.answerKey(key, refusal(m, &d, false))
	}
}

func progressToken(m *mcpmsg.Message) any {
	meta, _ := m.Params["_meta"].(map[string]any)
	if meta == nil {
		return nil
	}
	return meta["progressToken"]
}

// progress tells the client its held call is still waiting.
func (s *Session) progress(token any, n int, key, id string) {
	msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/progress", "params": map[string]any{
		"progressToken": token, "progress": n, "message": "waiting for a person to approve this call (approval " + id + ")",
	}})
	s.toClnt(msg, key, false) // a notification: the stream goes on
}

// inputRequired is "still pending" for a 2026-07-28 client that declared
// URL-mode elicitation: an InputRequiredResult sending the person to the
// approval page, with agentpdp's own requestState for the retry. ok is
// false when the client cannot take one (then the isError answer serves).
func (s *Session) inputRequired(m *mcpmsg.Message, in *pdp.Input, id string) ([]byte, bool) {
	if statelessVersion(m) == "" || !urlElicitation(m.Params) || len(s.opts.StateKey) == 0 || s.opts.ApprovalURL == nil {
		return nil, false
	}
	h := stateHandle{Approval: id, Digest: in.Action.Digest, Agent: in.Agent.ID, User: in.User.ID, Expires: time.Now().Add(stateHandleTTL).Unix()}
	if up, ok := m.Params["requestState"].(string); ok {
		h.UpstreamState = &up
	}
	if up, ok := m.Params["inputResponses"].(map[string]any); ok && len(up) > 0 {
		h.UpstreamResponses, _ = json.Marshal(up)
	}
	state, err := sealState(s.opts.StateKey, h)
	if err != nil {
		s.log.Error("sealing requestState", "error", err)
		return nil, false
	}
	return response(m.ID, map[string]any{
		"resultType": "input_required",
		"inputRequests": map[string]any{approvalInputKey: map[string]any{
			"method": "elicitation/create",
			"params": map[string]any{
				"mode":    "url",
				"url":     s.opts.ApprovalURL(id),
				"message": "This call is waiting for a person to approve it (approval " + id + "). Open the page to see it; the call goes ahead once approved.",
			},
		}},
		"requestState": state,
	}), true
}
