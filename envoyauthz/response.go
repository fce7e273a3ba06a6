package envoyauthz

import (
	"encoding/json"
	"maps"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentpdp/agentpdp/approvals"
	"github.com/agentpdp/agentpdp/pdp"
)

// Headers the door sets.
const (
	HeaderDecisionID = "x-agentpdp-decision-id"
	// HeaderAgent and HeaderUser go upstream on allow when trusted_headers
	// is on; client-sent copies are removed so they cannot be forged.
	HeaderAgent = "x-agentpdp-agent"
	HeaderUser  = "x-agentpdp-user"
)

// body is the JSON the client gets on deny and approve (DESIGN §4).
type body struct {
	DecisionID string       `json:"decision_id"`
	Effect     pdp.Effect   `json:"effect"`
	Status     string       `json:"status,omitempty"`
	ApprovalID string       `json:"approval_id,omitempty"`
	Approvers  []string     `json:"approvers,omitempty"`
	Min        int          `json:"min,omitempty"`
	Reasons    []bodyReason `json:"reasons,omitempty"`
	// A held request's answer is problem+json (RFC 9457) with these too.
	Type       string `json:"type,omitempty"`
	Title      string `json:"title,omitempty"`
	StatusURL  string `json:"status_url,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
}

type bodyReason struct {
	Rule    string `json:"rule"`
	Message string `json:"message,omitempty"`
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: k, Value: v},
		// Overwrite, so a client cannot pre-set our headers.
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// Messages shared by all responses: a message that is only read while
// marshaling may be reused concurrently.
var (
	effectValues = map[pdp.Effect]*structpb.Value{
		pdp.Allow: structpb.NewStringValue(string(pdp.Allow)), pdp.Deny: structpb.NewStringValue(string(pdp.Deny)),
		pdp.Approve: structpb.NewStringValue(string(pdp.Approve)),
	}
	okStatus = &rpcstatus.Status{Code: int32(code.Code_OK)}
)

// strValues backs up to four string Values in one allocation: decision
// id, agent, user and approval id, the most metadata holds.
type strValues struct {
	vals  [4]structpb.Value
	kinds [4]structpb.Value_StringValue
	n     int
}

func (sv *strValues) str(v string) *structpb.Value {
	i := sv.n
	sv.n++
	sv.kinds[i].StringValue = v
	sv.vals[i].Kind = &sv.kinds[i]
	return &sv.vals[i]
}

// metadata is dynamic_metadata for Envoy's access log
// (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%).
func (s *Server) metadata(sv *strValues, id string, e pdp.Effect, d *pdp.Decision, in *pdp.Input) map[string]*structpb.Value {
	f := make(map[string]*structpb.Value, 5)
	f["decision_id"] = sv.str(id)
	f["effect"] = effectValues[e]
	if d != nil && d.PolicyRevision != "" {
		// The revision changes only on reload: reuse its Value.
		rv := s.revision.Load()
		if rv == nil || rv.GetStringValue() != d.PolicyRevision {
			rv = structpb.NewStringValue(d.PolicyRevision)
			s.revision.Store(rv)
		}
		f["policy_revision"] = rv
	}
	if in != nil {
		if in.Agent.ID != "" {
			f["agent"] = sv.str(in.Agent.ID)
		}
		if in.User.ID != "" {
			f["user"] = sv.str(in.User.ID)
		}
	}
	if d != nil && d.ApprovalID() != "" {
		// Held, or allowed by a grant: which approval, for access logs.
		f["approval_id"] = sv.str(d.ApprovalID())
	}
	return f
}

// policyHeaders are the headers the allow rules asked to set upstream
// (names checked by pdp: never agentpdp's own or credentials), in name
// order so the answer is deterministic.
func policyHeaders(d *pdp.Decision) []*corev3.HeaderValueOption {
	if len(d.Headers) == 0 {
		return nil
	}
	set := make([]*corev3.HeaderValueOption, 0, len(d.Headers)+3)
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		set = append(set, header(k, d.Headers[k]))
	}
	return set
}

// okResponse holds every message of an allow answer, so the hot path
// allocates once instead of once per message.
type okResponse struct {
	resp  authv3.CheckResponse
	oneof authv3.CheckResponse_OkResponse
	ok    authv3.OkHttpResponse
	md    structpb.Struct
	sv    strValues
	opts  [3]corev3.HeaderValueOption
	hvs   [3]corev3.HeaderValue
	set   [3]*corev3.HeaderValueOption
	n     int
}

func (o *okResponse) header(k, v string) {
	i := o.n
	o.n++
	o.hvs[i].Key, o.hvs[i].Value = k, v
	o.opts[i].Header = &o.hvs[i]
	// Overwrite, so a client cannot pre-set our headers.
	o.opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	o.set[i] = &o.opts[i]
}

func (s *Server) allowed(in *pdp.Input, d *pdp.Decision) *authv3.CheckResponse {
	o := &okResponse{}
	set := policyHeaders(d)
	var remove []string
	o.header(HeaderDecisionID, d.ID)
	if s.cfg.TrustedHeaders {
		if in.Agent.ID != "" {
			o.header(HeaderAgent, in.Agent.ID)
		} else {
			remove = append(remove, HeaderAgent)
		}
		if in.User.ID != "" {
			o.header(HeaderUser, in.User.ID)
		} else {
			remove = append(remove, HeaderUser)
		}
	}
	if set == nil {
		set = o.set[:o.n:o.n]
	} else {
		set = append(set, o.set[:o.n]...)
	}
	o.ok.Headers, o.ok.HeadersToRemove = set, remove
	o.oneof.OkResponse = &o.ok
	o.md.Fields = s.metadata(&o.sv, d.ID, pdp.Allow, d, in)
	o.resp.Status = okStatus
	o.resp.HttpResponse = &o.oneof
	o.resp.DynamicMetadata = &o.md
	return &o.resp
}

// enforced are the reasons behind the effect, not shadow rules or rules
// the effect overrode.
func enforced(d *pdp.Decision) []bodyReason {
	out := make([]bodyReason, 0, len(d.Reasons))
	for _, r := range d.Reasons {
		if !r.Shadow && r.Effect == d.Effect {
			out = append(out, bodyReason{Rule: r.Rule, Message: r.Message})
		}
	}
	return out
}

func (s *Server) denied(in *pdp.Input, d *pdp.Decision) *authv3.CheckResponse {
	b := body{DecisionID: d.ID, Effect: pdp.Deny, Reasons: enforced(d)}
	return s.refusal(s.denyStatus(d), &b, d, in, nil)
}

// denyStatus is the status the deny rules asked for when Envoy knows it
// (pdp keeps it within 400–599; Envoy's enum has gaps), else deny_status.
func (s *Server) denyStatus(d *pdp.Decision) int {
	if d.Status == 0 {
		return s.cfg.DenyStatus
	}
	if !envoyErrorStatus(d.Status) {
		s.log.Warn("policy asked for a status Envoy does not know; answering deny_status",
			"decision_id", d.ID, "status", d.Status, "deny_status", s.cfg.DenyStatus)
		return s.cfg.DenyStatus
	}
	return d.Status
}

// held answers a call waiting for approval: problem+json with the
// approval id, where to watch it, and when to retry the identical request
// (which, once approved, is allowed once).
func (s *Server) held(in *pdp.Input, d *pdp.Decision) *authv3.CheckResponse {
	b := body{DecisionID: d.ID, Effect: pdp.Approve, Status: "approval_pending", Reasons: enforced(d),
		Type: "https://agentpdp.dev/problems/approval-pending", Title: "This request is waiting for approval",
		RetryAfter: s.retryAfterSecs}
	if d.Approval != nil {
		b.Approvers, b.Min, b.ApprovalID = d.Approval.Approvers, d.Approval.Min, d.Approval.ID
		if b.ApprovalID != "" {
			b.StatusURL = approvals.StatusURL(s.cfg.ApprovalsURL, b.ApprovalID)
		}
	}
	return s.refusal(s.cfg.ApproveStatus, &b, d, in, []*corev3.HeaderValueOption{header("retry-after", s.retryAfter)})
}

// rejected denies a request the door could not map.
func (s *Server) rejected(id string, rej *rejection) *authv3.CheckResponse {
	st := rej.status
	if st == 0 {
		st = s.cfg.DenyStatus
	}
	var extra []*corev3.HeaderValueOption
	if rej.authenticate != "" {
		extra = append(extra, header("www-authenticate", rej.authenticate))
	}
	if rej.retry {
		extra = append(extra, header("retry-after", s.retryAfter))
	}
	msg := rej.msg
	if rej.public != "" {
		msg = rej.public
	}
	b := body{DecisionID: id, Effect: pdp.Deny, Reasons: []bodyReason{{Rule: rej.rule, Message: msg}}}
	return s.refusal(st, &b, nil, nil, extra)
}

func (s *Server) refusal(httpStatus int, b *body, d *pdp.Decision, in *pdp.Input, extra []*corev3.HeaderValueOption) *authv3.CheckResponse {
	js, err := json.Marshal(b)
	if err != nil { // cannot happen with these types; never answer without a body
		js = []byte(`{"decision_id":"` + b.DecisionID + `","effect":"deny"}`)
	}
	msg := string(b.Effect)
	if len(b.Reasons) > 0 {
		msg = b.Reasons[0].Rule + ": " + b.Reasons[0].Message
	}
	ctype := "application/json"
	if b.Type != "" {
		ctype = "application/problem+json"
	}
	hdrs := append([]*corev3.HeaderValueOption{
		header("content-type", ctype),
		header(HeaderDecisionID, b.DecisionID),
	}, extra...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: msg},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: hdrs,
			Body:    string(js),
		}},
		DynamicMetadata: &structpb.Struct{Fields: s.metadata(&strValues{}, b.DecisionID, b.Effect, d, in)},
	}
}
