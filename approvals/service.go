package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Defaults of DESIGN §5.
const (
	DefaultPendingTTL = time.Hour
	DefaultGrantTTL   = 15 * time.Minute
	DefaultRetention  = 30 * 24 * time.Hour
)

// Options configure a Service.
type Options struct {
	Store *Store
	// Log gets every transition, on the decisions' hash chain. A
	// transition whose record cannot be written does not happen.
	Log pdp.Recorder
	// PendingTTL and GrantTTL apply where the rule names none.
	PendingTTL, GrantTTL time.Duration
	// DefaultApprovers serve rules that name none; with none at all a
	// held call is denied (builtin#no-approvers).
	DefaultApprovers []string
	// Redact are the decision log's redaction paths (input.action.…),
	// applied to the action summary reviewers see and the store keeps.
	Redact []string
	// SweepInterval is how often expired approvals are ended (default 1 s).
	SweepInterval time.Duration
	// Retention is how long an ended approval stays in the store (default
	// 30 days; its transitions stay in the decision log).
	Retention time.Duration
	// OnEvent, when set, hears every transition once it is stored and
	// logged: requested, reviewed, approved, denied, expired, consumed
	// (webhooks, the web page's live updates). It must not block.
	OnEvent func(kind string, a *Approval)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Service applies the approval rules over a Store. It is the pdp.Holder of
// both doors.
type Service struct {
	opts   Options
	redact [][]string
}

var _ pdp.Holder = (*Service)(nil)

// New makes a Service.
func New(opts Options) *Service {
	opts.PendingTTL = cmpOr(opts.PendingTTL, DefaultPendingTTL)
	opts.GrantTTL = cmpOr(opts.GrantTTL, DefaultGrantTTL)
	opts.SweepInterval = cmpOr(opts.SweepInterval, time.Second)
	opts.Retention = cmpOr(opts.Retention, DefaultRetention)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{opts: opts, redact: pdp.ParseRedactPaths(opts.Redact)}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Store is the service's store.
func (s *Service) Store() *Store { return s.opts.Store }

// Hold implements pdp.Holder: it uses a grant for the call's digest (the
// decision becomes allow), or opens or joins the pending approval for it.
func (s *Service) Hold(ctx context.Context, in *pdp.Input, d *pdp.Decision) error {
	now := s.opts.Now().UTC()
	ap := d.Approval
	if ap == nil {
		ap = &pdp.ApprovalRequest{Min: 1}
		d.Approval = ap
	}
	if len(ap.Approvers) == 0 {
		ap.Approvers = slices.Clone(s.opts.DefaultApprovers)
	}
	if len(ap.Approvers) == 0 {
		d.Effect, d.Approval = pdp.Deny, nil
		d.Reasons = append(d.Reasons, pdp.Reason{Rule: "builtin#no-approvers", Effect: pdp.Deny,
			Message: "the call needs approval, but its rule names no approvers and approvals.default_approvers is empty"})
		return nil
	}
	ap.Min = max(ap.Min, 1)
	digest := in.Action.Digest
	if digest == "" {
		return errors.New("the call has no action digest")
	}

	// The identical call, approved: use the grant. It was decided again
	// just now (this decision), and no deny fired, or we would not be here.
	if a, err := s.opts.Store.Consume(ctx, digest, now); err == nil {
		d.Effect = pdp.Allow
		ap.ID, ap.State = a.ID, string(Consumed)
		d.Reasons = append(d.Reasons, pdp.Reason{Rule: "builtin#approved", Effect: pdp.Allow,
			Message: fmt.Sprintf("approved by %s (approval %s); this use consumes it", strings.Join(reviewers(a, VerdictApprove), ", "), a.ID)})
		if err := s.event(a, "consumed", d.ID, pdp.Allow, nil); err != nil {
			return err
		}
		s.notify("consumed", a)
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("approvals store: %w", err)
	}

	pendingTTL, err := ttl(ap.TTL, s.opts.PendingTTL)
	if err != nil {
		return fmt.Errorf("ttl: %w", err)
	}
	grantTTL, err := ttl(ap.GrantTTL, s.opts.GrantTTL)
	if err != nil {
		return fmt.Errorf("grant_ttl: %w", err)
	}
	action, err := s.summary(in)
	if err != nil {
		return err
	}
	a := &Approval{
		ID: pdp.NewDecisionID(), Digest: digest, Agent: in.Agent.ID, User: in.User.ID, OwnerTeam: in.Agent.OwnerTeam,
		DelegationChain: in.Delegation.Chain, Action: action, DecisionID: d.ID, PolicyRevision: d.PolicyRevision,
		Approvers: ap.Approvers, Min: ap.Min, Reviews: []Review{}, RequestedAt: now, ExpiresAt: now.Add(pendingTTL),
		GrantTTL: grantTTL, UsesLeft: 1, UpdatedAt: now,
	}
	for _, r := range d.Reasons {
		if r.Effect == pdp.Approve && !r.Shadow {
			a.Reasons = append(a.Reasons, Reason{Rule: r.Rule, Effect: string(r.Effect), Message: r.Message})
		}
	}
	for range 2 {
		got, created, err := s.opts.Store.Create(ctx, a)
		if err != nil {
			return fmt.Errorf("approvals store: %w", err)
		}
		if !created && !now.Before(got.ExpiresAt) {
			// Past its time but not yet swept: end it, open a new one.
			s.Sweep(ctx)
			continue
		}
		ap.ID, ap.State = got.ID, string(Pending)
		if created {
			if err := s.event(got, "requested", d.ID, pdp.Approve, nil); err != nil {
				return err
			}
			s.notify("requested", got)
		}
		return nil
	}
	return errors.New("approvals store: the pending approval for this call could not be replaced")
}

// ttl is a rule's ttl or grant_ttl, or def when it names none.
func ttl(s string, def time.Duration) (time.Duration, error) {
	d, err := pdp.ParseTTL(s)
	return cmpOr(d, def), err
}

// summary is the redacted action a reviewer sees.
func (s *Service) summary(in *pdp.Input) (map[string]any, error) {
	act := map[string]any{"kind": in.Action.Kind}
	for k, v := range map[string]string{"server": in.Action.Server, "tool": in.Action.Tool, "resource": in.Action.Resource,
		"method": in.Action.HTTP.Method, "host": in.Action.HTTP.Host, "path": in.Action.HTTP.Path} {
		if v != "" {
			act[k] = v
		}
	}
	if in.Action.Arguments != nil {
		act["arguments"] = in.Action.Arguments
	}
	raw, err := jcs.Append(nil, map[string]any{"action": act})
	if err != nil {
		return nil, fmt.Errorf("action summary: %w", err)
	}
	if red, changed, err := jcs.Redact(nil, raw, s.redact, []byte(`"`+pdp.Redacted+`"`)); err != nil {
		return nil, fmt.Errorf("action summary: %w", err)
	} else if changed {
		raw = red
	}
	var doc struct {
		Action map[string]any `json:"action"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	return doc.Action, nil
}

func reviewers(a *Approval, verdict string) []string {
	var out []string
	for _, r := range a.Reviews {
		if r.Verdict == verdict {
			out = append(out, r.By)
		}
	}
	return out
}

// ReviewRequest is a reviewer's verdict on one approval.
type ReviewRequest struct {
	Verdict string
	Comment string
	// Digest, when set, must be the approval's: the reviewer approves
	// the call they saw, not one that replaced it.
	Digest string
}

// Review records r's verdict on approval id, under DESIGN §5's rules. A
// refusal is an error wrapping ErrRefused, and is logged.
func (s *Service) Review(ctx context.Context, id string, r Reviewer, req ReviewRequest) (*Approval, error) {
	now := s.opts.Now().UTC()
	var from State
	var kinds []string
	a, err := s.opts.Store.Update(ctx, id, func(a *Approval) error {
		from = a.State
		if why, conflict := s.refuse(a, r, req, now); why != "" {
			return &refusal{why: why, conflict: conflict}
		}
		a.Reviews = append(a.Reviews, Review{By: r.ID, Verdict: req.Verdict, At: now, Comment: req.Comment})
		a.UpdatedAt = now
		switch {
		case req.Verdict == VerdictDeny:
			a.State = Denied
		case a.Approvals() >= a.Min:
			a.State = Approved
			a.GrantExpiresAt = now.Add(a.GrantTTL)
		}
		return nil
	}, func(a *Approval) error {
		detail := map[string]any{"reviewer": r, "verdict": req.Verdict}
		if req.Comment != "" {
			detail["comment"] = req.Comment
		}
		effect := pdp.Approve
		if req.Verdict == VerdictDeny {
			effect = pdp.Deny
		}
		if err := s.event(a, "reviewed", "", effect, detail); err != nil {
			return err
		}
		kinds = append(kinds, "reviewed")
		switch a.State {
		case Approved:
			kinds = append(kinds, "approved")
			return s.event(a, "approved", "", pdp.Allow, map[string]any{"reviewers": reviewers(a, VerdictApprove), "grant_expires_at": a.GrantExpiresAt})
		case Denied:
			kinds = append(kinds, "denied")
			return s.event(a, "denied", "", pdp.Deny, map[string]any{"reviewer": r})
		}
		return nil
	})
	if err == nil {
		for _, k := range kinds {
			s.notify(k, a)
		}
	}
	if errors.Is(err, ErrRefused) {
		// The refusal is itself a record: who tried what, and why not.
		if lerr := s.event(a, "review_refused", "", pdp.Deny, map[string]any{"reviewer": r, "verdict": req.Verdict, "reason": refusalReason(err), "state_was": from}); lerr != nil {
			s.opts.Logger.Error("approvals: refused review not logged", "approval_id", id, "error", lerr)
		}
		s.opts.Logger.Warn("approval review refused", "approval_id", id, "reviewer", r.ID, "reason", err)
	}
	return a, err
}

// refusal is a review not accepted: errors.Is ErrRefused, and
// ErrNotPending when the approval has moved on.
type refusal struct {
	why      string
	conflict bool
}

func (e *refusal) Error() string { return ErrRefused.Error() + ": " + e.why }

// refusalReason is why a review was refused, as the reviewer reads it.
func refusalReason(err error) string {
	if r, ok := errors.AsType[*refusal](err); ok {
		return r.why
	}
	return err.Error()
}
func (e *refusal) Is(target error) bool {
	return target == ErrRefused || (e.conflict && target == ErrNotPending)
}

// refuse says why r may not give this verdict ("" if they may), and
// whether that is because the approval is no longer pending.
func (s *Service) refuse(a *Approval, r Reviewer, req ReviewRequest, now time.Time) (string, bool) {
	if a.State != Pending {
		return fmt.Sprintf("the approval is %s, no longer pending", a.State), true
	}
	if !now.Before(a.ExpiresAt) {
		return "the approval has expired", true
	}
	return s.refuseReviewer(a, r, req), false
}

func (s *Service) refuseReviewer(a *Approval, r Reviewer, req ReviewRequest) string {
	switch {
	case r.ID == "":
		return "the reviewer is not authenticated"
	case req.Verdict != VerdictApprove && req.Verdict != VerdictDeny:
		return fmt.Sprintf("verdict %q is not approve or deny", req.Verdict)
	case req.Digest != "" && req.Digest != a.Digest:
		return "the digest does not match this approval's call"
	case r.is(a.User):
		return "nobody reviews a call made for themselves"
	case r.is(a.Agent):
		return "an agent does not review its own call"
	case a.OwnerTeam != "" && slices.Contains(r.Groups, a.OwnerTeam):
		return fmt.Sprintf("members of %s, the team that owns agent %s, do not review its calls", a.OwnerTeam, a.Agent)
	case !r.inSet(a.Approvers):
		return fmt.Sprintf("%s is not among the approvers (%s)", r.ID, strings.Join(a.Approvers, ", "))
	}
	for _, rv := range a.Reviews {
		if rv.By == r.ID {
			return "this reviewer has already reviewed it"
		}
	}
	return ""
}

// Get returns one approval.
func (s *Service) Get(ctx context.Context, id string) (*Approval, error) {
	return s.opts.Store.Get(ctx, id)
}

// List returns approvals matching f.
func (s *Service) List(ctx context.Context, f Filter) ([]*Approval, error) {
	return s.opts.Store.List(ctx, f)
}

// Wait returns approval id once it is no longer pending, or when ctx ends
// (then with ctx's error and the approval as last read). It is woken by the
// store's change signal, not by polling; a slow poll remains as a backstop
// against a lost notification.
func (s *Service) Wait(ctx context.Context, id string) (*Approval, error) {
	wake := make(chan struct{}, 1)
	stop := s.opts.Store.Watch(func(changed string) {
		if changed == id || changed == "" {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	defer stop()
	for {
		a, err := s.opts.Store.Get(ctx, id)
		if err != nil {
			return a, err
		}
		if a.State != Pending {
			return a, nil
		}
		until := a.ExpiresAt.Sub(s.opts.Now())
		if until <= 0 {
			s.Sweep(ctx)
			continue
		}
		t := time.NewTimer(min(until, 5*time.Second))
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return a, ctx.Err()
		}
		t.Stop()
	}
}

// Run ends expired approvals every SweepInterval, and removes those that
// ended more than Retention ago every hour, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	var purged time.Time
	for {
		s.Sweep(ctx)
		if now := s.opts.Now(); now.Sub(purged) >= time.Hour {
			purged = now
			s.Purge(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Purge removes approvals that ended more than Retention ago.
func (s *Service) Purge(ctx context.Context) {
	n, err := s.opts.Store.Purge(ctx, s.opts.Now().Add(-s.opts.Retention))
	switch {
	case err != nil && ctx.Err() == nil:
		s.opts.Logger.Error("approvals: purging ended approvals", "error", err)
	case n > 0:
		s.opts.Logger.Info("approvals: purged ended approvals", "count", n, "older_than", s.opts.Retention.String())
	}
}

// Sweep ends what has expired now and logs each.
func (s *Service) Sweep(ctx context.Context) {
	gone, err := s.opts.Store.Expire(ctx, s.opts.Now().UTC())
	if err != nil && ctx.Err() == nil {
		s.opts.Logger.Error("approvals: expiring", "error", err)
	}
	for _, a := range gone {
		if err := s.event(a, "expired", "", pdp.Deny, nil); err != nil {
			s.opts.Logger.Error("approvals: expiry not logged", "approval_id", a.ID, "error", err)
		}
		s.notify("expired", a)
	}
}

func (s *Service) notify(kind string, a *Approval) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(kind, a)
	}
}

// event writes one transition to the decision log.
func (s *Service) event(a *Approval, kind, decisionID string, effect pdp.Effect, detail map[string]any) error {
	if s.opts.Log == nil || a == nil {
		return nil
	}
	result := map[string]any{"approval_id": a.ID, "state": a.State, "digest": a.Digest, "approvers": a.Approvers, "min": a.Min}
	for k, v := range detail {
		result[k] = v
	}
	raw, err := json.Marshal(result) // the log makes it canonical
	if err != nil {
		return err
	}
	rules := make([]string, 0, len(a.Reasons))
	for _, r := range a.Reasons {
		rules = append(rules, r.Rule)
	}
	return s.opts.Log.Append(&decisionlog.Record{
		Agent: a.Agent, ApprovalID: a.ID, DecisionID: orNew(decisionID, pdp.NewDecisionID),
		DelegationChain: a.DelegationChain, Effect: string(effect), Event: "approval." + kind,
		Path: "agentpdp/approval", PolicyRevision: a.PolicyRevision, Reasons: rules, Result: raw,
		User: a.User,
	})
}

func orNew(s string, def func() string) string {
	if s != "" {
		return s
	}
	return def()
}
