package pdp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentpdp/agentpdp/pdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/jcs"
)

// Recorder receives every decision record before the caller is answered;
// *decisionlog.Log is one. The record and its byte slices are reused after
// Append returns: a Recorder copies what it keeps.
type Recorder interface {
	Append(*decisionlog.Record) error
}

// Options tune a PDP. The zero value is usable: 100 ms timeout, no log,
// unknown agents denied, rate not counted.
type Options struct {
	// Timeout bounds one decision; past it the call is denied.
	Timeout time.Duration
	// Log, when set, gets every decision; a failed write turns the
	// decision into a deny.
	Log Recorder
	// AllowUnknownAgents lets agents missing from the inventory through to
	// the policies (which still decide).
	AllowUnknownAgents bool
	// CountRate counts calls per agent and fills context.rate; off for
	// eval and tests, which take the rate from the input.
	CountRate bool
	// Redact lists dotted paths (action.arguments.password, user.claims.*)
	// replaced by "[REDACTED]" in the logged input.
	Redact []string
	Logger *slog.Logger
	// Metrics, when set, receives counts and latencies.
	Metrics *Metrics
	// Now is the clock (tests).
	Now func() time.Time
	// Holder, when set, turns every approve decision into a hold (or
	// the use of a grant) before the decision is logged.
	Holder Holder
}

// Holder is the approvals side of a decision. Hold is called for every
// approve decision, after its digest is set and before it is logged. It
// either uses a matching grant (d becomes allow), joins or opens a pending
// approval (d stays approve, d.Approval.ID set), or refuses (d becomes
// deny, with its reason). An error denies the call.
type Holder interface {
	Hold(ctx context.Context, in *Input, d *Decision) error
}

// PDP decides. It is safe for concurrent use; the policy set is swapped
// atomically on reload.
type PDP struct {
	set    atomic.Pointer[PolicySet]
	opts   Options
	rate   *rateWindow
	redact [][]string
}

// DefaultTimeout bounds a decision when Options.Timeout is zero.
const DefaultTimeout = 100 * time.Millisecond

// New makes a PDP serving set.
func New(set *PolicySet, opts Options) *PDP {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &PDP{opts: opts, rate: newRateWindow(), redact: ParseRedactPaths(opts.Redact)}
	p.Swap(set)
	return p
}

// Swap makes set the serving revision.
func (p *PDP) Swap(set *PolicySet) {
	p.set.Store(set)
	if p.opts.Metrics != nil && set != nil {
		p.opts.Metrics.setRevision(set.Revision)
	}
}

// PolicySet is the serving revision.
func (p *PDP) PolicySet() *PolicySet { return p.set.Load() }

var (
	_ Decider = (*PDP)(nil)
	_ Refuser = (*PDP)(nil)
)

// Decide evaluates in against the serving policy set, logs the decision and
// returns it. It fills in.Agent from the inventory, in.Context.Time and
// in.Context.Rate. Any error is a deny that names it.
func (p *PDP) Decide(ctx context.Context, in *Input) (d Decision) {
	start := p.opts.Now()
	d.ID = NewDecisionID()
	set := p.set.Load()
	var hits []hit
	defer func() {
		if r := recover(); r != nil {
			d.failClosed("builtin#internal-error", fmt.Sprint("internal error: ", r))
			p.opts.Logger.Error("decision panicked", "decision_id", d.ID, "panic", r)
		}
	}()
	if set == nil {
		d.Effect = Deny
		d.Reasons = []Reason{{Rule: "builtin#no-policy", Effect: Deny, Message: "no policy set is loaded"}}
		return p.finish(in, d, start)
	}
	d.PolicyRevision = set.Revision
	hp := hitBufs.Get().(*[]hit)
	hits = p.evaluate(ctx, set, in, start, (*hp)[:0])
	d.Effect, d.Approval, d.Reasons, d.ShadowEffect = combine(hits)
	if d.Effect == Allow {
		var conflict string
		if d.Headers, conflict = allowHeaders(hits); conflict != "" {
			d.Effect, d.Headers = Deny, nil
			d.Reasons = append(d.Reasons, Reason{Rule: "builtin#header-conflict", Effect: Deny, Message: conflict})
		}
	}
	if d.Effect == Deny {
		d.Status = denyStatus(hits)
	}
	// combine copied what it keeps: the buffer can be reused.
	clear(hits)
	*hp = hits[:0]
	hitBufs.Put(hp)
	d.Shadow = d.ShadowEffect != d.Effect
	if !d.Shadow {
		d.ShadowEffect = ""
	}
	if d.Effect == Approve && in.Action.Digest == "" {
		in.Action.Digest = Digest(in)
	}
	if d.Effect == Approve && p.opts.Holder != nil {
		if err := p.opts.Holder.Hold(ctx, in, &d); err != nil {
			d.failClosed("builtin#approval-store", "the call needs approval, but it could not be held: "+err.Error())
			p.opts.Logger.Error("approval hold failed; denying", "decision_id", d.ID, "error", err)
		}
	}
	return p.finish(in, d, start)
}

// evaluate runs the built-in inventory checks and both engines.
func (p *PDP) evaluate(ctx context.Context, set *PolicySet, in *Input, start time.Time, hits []hit) []hit {
	if in.Context.Time.IsZero() {
		in.Context.Time = start.UTC()
	}
	builtin := func(rule, format string, a ...any) {
		hits = append(hits, hit{Reason: Reason{Rule: "builtin#" + rule, Effect: Deny, Message: fmt.Sprintf(format, a...)}})
	}
	if inv, ok := set.Inventory.Lookup(in.Agent.ID); ok {
		inv.merge(&in.Agent)
	}
	switch {
	case in.Agent.ID == "":
		builtin("no-agent", "the call carries no agent identity")
	case !in.Agent.Registered && !p.opts.AllowUnknownAgents:
		builtin("unknown-agent", "agent %s is not in the inventory", in.Agent.ID)
	}
	if !in.Agent.Expires.IsZero() && !in.Context.Time.Before(in.Agent.Expires) {
		builtin("expired-agent", "agent %s expired at %s", in.Agent.ID, in.Agent.Expires.Format(time.RFC3339))
	}
	if p.opts.CountRate && in.Agent.Registered {
		in.Context.Rate.AgentCallsLastMinute = p.rate.hit(in.Agent.ID, start)
	}
	if max := in.Agent.MaxCallsPerMinute; max > 0 && in.Context.Rate.AgentCallsLastMinute > max {
		builtin("rate-limit", "agent %s made %d calls in the last minute, more than its %d", in.Agent.ID, in.Context.Rate.AgentCallsLastMinute, max)
		hits[len(hits)-1].Status = 429 // Too Many Requests, unless another deny says otherwise
	}

	var err error
	if len(set.cel) > 0 {
		// CEL rules are small expressions whose comprehensions are bounded
		// by the input: no timer per decision, but a run past the timeout
		// still denies.
		if hits, err = p.guard("CEL", hits, func(h []hit) ([]hit, error) { return evalCEL(set.cel, in, h) }); err != nil {
			builtin("eval-error", "CEL: %v", err)
		}
		if p.opts.Now().Sub(start) > p.opts.Timeout {
			builtin("timeout", "policy evaluation exceeded %s", p.opts.Timeout)
		}
	}
	if set.rego != nil {
		if hits, err = p.guard("Rego", hits, func(h []hit) ([]hit, error) { return set.rego.eval(ctx, p.opts.Timeout, in, h) }); err != nil {
			if errors.Is(err, errTimeout) {
				builtin("timeout", "policy evaluation exceeded %s", p.opts.Timeout)
			} else {
				builtin("eval-error", "Rego: %v", err)
			}
		}
	}
	return hits
}

// guard runs one engine; a panic in it becomes that engine's evaluation
// error (so a deny naming it), keeping the hits from before it ran.
func (p *PDP) guard(engine string, hits []hit, eval func([]hit) ([]hit, error)) (out []hit, err error) {
	n := len(hits)
	defer func() {
		if r := recover(); r != nil {
			p.opts.Logger.Error("policy engine panicked", "engine", engine, "panic", r, "stack", string(debug.Stack()))
			out, err = hits[:n], fmt.Errorf("internal error: %v", r)
		}
	}()
	return eval(hits)
}

// combine applies DESIGN §3: any deny wins; else any approve holds (approver
// sets merged, the largest min wins); else any allow allows; else deny.
// Shadow hits are reported and combined separately.
func combine(hits []hit) (Effect, *ApprovalRequest, []Reason, Effect) {
	reasons := make([]Reason, 0, len(hits)+1)
	var enforced, all [3]bool // deny, approve, allow
	var appr *ApprovalRequest
	idx := func(e Effect) int {
		switch e {
		case Deny:
			return 0
		case Approve:
			return 1
		}
		return 2
	}
	for i := range hits {
		h := &hits[i]
		reasons = append(reasons, h.Reason)
		all[idx(h.Effect)] = true
		if h.Shadow {
			continue
		}
		enforced[idx(h.Effect)] = true
		if h.Effect == Approve {
			if appr == nil {
				appr = &ApprovalRequest{}
			}
			appr.Approvers = mergeSorted(appr.Approvers, h.Approvers)
			appr.Min = max(appr.Min, h.Min, 1)
			if h.TTL != "" && (appr.TTL == "" || shorter(h.TTL, appr.TTL)) {
				appr.TTL = h.TTL
			}
			if h.GrantTTL != "" && (appr.GrantTTL == "" || shorter(h.GrantTTL, appr.GrantTTL)) {
				appr.GrantTTL = h.GrantTTL
			}
			if appr.Reason == "" {
				appr.Reason = h.Message
			}
		}
	}
	pick := func(f [3]bool) Effect {
		switch {
		case f[0]:
			return Deny
		case f[1]:
			return Approve
		case f[2]:
			return Allow
		}
		return Deny
	}
	effect := pick(enforced)
	if !enforced[0] && !enforced[1] && !enforced[2] {
		reasons = append(reasons, Reason{Rule: "builtin#default-deny", Effect: Deny, Message: "no rule allowed this call"})
	}
	if effect != Approve {
		appr = nil
	}
	return effect, appr, reasons, pick(all)
}

// denyStatus is the status every enforced deny hit asks for, or 0 (the
// door's default) when one asks for none or two disagree: a status must
// describe the whole refusal, not one of its reasons.
func denyStatus(hits []hit) int {
	st := 0
	for i := range hits {
		h := &hits[i]
		if h.Effect != Deny || h.Shadow {
			continue
		}
		if h.Status == 0 || (st != 0 && h.Status != st) {
			return 0
		}
		st = h.Status
	}
	return st
}

func mergeSorted(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	seen := make(map[string]bool, len(a)+len(b))
	out := make([]string, 0, len(a)+len(b))
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func shorter(a, b string) bool {
	da, ea := time.ParseDuration(a)
	db, eb := time.ParseDuration(b)
	return ea == nil && (eb != nil || da < db)
}

// finish writes the decision record; if it cannot be written the call is
// denied, since an unlogged allow must not happen.
func (p *PDP) finish(in *Input, d Decision, start time.Time) Decision {
	if p.opts.Log != nil {
		if err := p.record(in, &d, start); err != nil {
			d.failClosed("builtin#log-write-failed", "decision log write failed: "+err.Error())
			p.opts.Logger.Error("decision log write failed; denying", "decision_id", d.ID, "error", err)
		}
	}
	if p.opts.Metrics != nil {
		p.opts.Metrics.observe(d.Effect, p.opts.Now().Sub(start))
	}
	return d
}

func (p *PDP) record(in *Input, d *Decision, start time.Time) error {
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	bufp := &sc.bufs
	raw, err := appendInput(bufp[0][:0], in)
	if err != nil {
		return fmt.Errorf("input has no canonical JSON form: %w", err)
	}
	bufp[0] = raw
	sum := sha256.Sum256(raw)
	d.InputHash = "sha256:" + hex.EncodeToString(sum[:])
	// The hash binds what was evaluated; the log gets the redacted copy.
	red, changed, err := jcs.Redact(bufp[2][:0], raw, p.redact, redactedJSON)
	if err != nil {
		return fmt.Errorf("redacting the input: %w", err)
	}
	if changed {
		bufp[2], raw = red, red
	}
	result, err := appendDecision(bufp[1][:0], d)
	if err != nil {
		return err
	}
	bufp[1] = result
	rules := sc.rules[:0]
	for _, r := range d.Reasons {
		rules = append(rules, r.Rule)
	}
	sc.rules = rules
	rec := &sc.rec
	*rec = decisionlog.Record{
		Agent:           in.Agent.ID,
		ApprovalID:      d.ApprovalID(),
		DecisionID:      d.ID,
		DelegationChain: in.Delegation.Chain,
		Effect:          string(d.Effect),
		Input:           raw,
		InputHash:       d.InputHash,
		LatencyNS:       p.opts.Now().Sub(start).Nanoseconds(),
		Path:            "agentpdp/" + in.Action.Kind,
		PolicyRevision:  d.PolicyRevision,
		Reasons:         rules,
		Result:          result,
		Shadow:          d.Shadow,
		User:            in.User.ID,
		Canonical:       true, // both made by the canonical encoders
	}
	// Append copies the record into its line before it returns, so the
	// buffers go back to the pool after it.
	return p.opts.Log.Append(rec)
}

// hitBufs reuses the rule-hit buffer across decisions.
var hitBufs = sync.Pool{New: func() any { h := make([]hit, 0, 8); return &h }}

// scratch is what recording a decision needs and nothing keeps after:
// encoding buffers (input, result, redacted input), the record, its rule
// ids. Reused across decisions.
type scratch struct {
	bufs  [3][]byte
	rec   decisionlog.Record
	rules []string
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// NewDecisionID makes a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds,
// then 74 random bits. Built here rather than with a UUID library because
// that one serialises every call on a mutex, which showed up as the top
// lock at 16 concurrent checks; crypto/rand needs no lock.
func NewDecisionID() string {
	var u [16]byte
	_, _ = rand.Read(u[6:]) // never fails (crypto/rand panics instead)
	ms := uint64(time.Now().UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:])
}

// Refuse records a denial a door made without evaluating policy (a request
// it could not parse or authenticate), so that it too has a decision id and
// a decision-log line. in holds whatever the door could map.
func (p *PDP) Refuse(_ context.Context, in *Input, r Reason) Decision {
	start := p.opts.Now()
	r.Effect = Deny
	d := Decision{ID: NewDecisionID(), Effect: Deny, Reasons: []Reason{r}}
	if set := p.set.Load(); set != nil {
		d.PolicyRevision = set.Revision
	}
	if in.Context.Time.IsZero() {
		in.Context.Time = start.UTC()
	}
	return p.finish(in, d, start)
}

// ParseTTL reads a rule's ttl or grant_ttl: 0 when it names none, an
// error when it is not a positive duration.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (30m, 1h)", s)
	case d <= 0:
		return 0, fmt.Errorf("%q is not positive", s)
	}
	return d, nil
}
