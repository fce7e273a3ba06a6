// Package identity turns what a door knows about its caller — verified JWT
// claims, a client certificate, Envoy's x-forwarded-client-cert header — into
// the pdp.Agent, pdp.User and pdp.Delegation of an Input.
//
// Both doors call it, so both read identity the same way. Everything here
// fails closed: a claim of the wrong shape is an error, never a guess.
package identity

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/agentpdp/agentpdp/pdp"
)

// MaxActDepth bounds RFC 8693 `act` nesting: a deeper token is refused
// rather than walked, so a hostile issuer cannot make us do unbounded work.
const MaxActDepth = 16

// MaxChainLength bounds an OIDC-A delegation_chain for the same reason.
const MaxChainLength = 64

// ClaimMapping says which claims mean what. An empty field takes its default
// (see DefaultClaimMapping), so a config only names what it overrides.
type ClaimMapping struct {
	// UserClaim names the human when the token's subject is the human
	// (RFC 8693 and plain tokens). Default "sub".
	UserClaim string `yaml:"user_claim"`
	// AgentClaim names the agent in a token that has neither `act` nor a
	// delegator, e.g. "azp" or "client_id" for an OAuth token issued to the
	// agent as a client; in OIDC-A tokens it replaces "sub" as the agent.
	// Default "" (none): the door supplies the agent from mTLS or config.
	AgentClaim string `yaml:"agent_claim"`
	// ActorClaim is the RFC 8693 actor claim. Default "act".
	ActorClaim string `yaml:"actor_claim"`
	// GroupsClaim holds the user's groups when the token's subject is the
	// user: an array of strings or one space/comma separated string.
	// Default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// DelegatorClaim marks an OIDC-A token and names the user in it.
	// Default "delegator_sub".
	DelegatorClaim string `yaml:"delegator_claim"`
	// DelegatorGroupsClaim holds the user's groups in an OIDC-A token. The
	// groups claim there belongs to the agent (the token's subject), so it is
	// never taken as the user's. Default "delegator_groups".
	DelegatorGroupsClaim string `yaml:"delegator_groups_claim"`
	// ChainClaim is the OIDC-A delegation chain: strings, or objects whose
	// "sub" names the party. Default "delegation_chain".
	ChainClaim string `yaml:"chain_claim"`
	// ConstraintsClaim is an object copied to delegation.constraints.
	// Default "delegation_constraints".
	ConstraintsClaim string `yaml:"constraints_claim"`
	// PurposeClaim is a string copied to delegation.purpose. Default "purpose".
	PurposeClaim string `yaml:"purpose_claim"`
}

// DefaultClaimMapping returns the mapping used for every empty field.
func DefaultClaimMapping() ClaimMapping {
	return ClaimMapping{
		UserClaim:            "sub",
		ActorClaim:           "act",
		GroupsClaim:          "groups",
		DelegatorClaim:       "delegator_sub",
		DelegatorGroupsClaim: "delegator_groups",
		ChainClaim:           "delegation_chain",
		ConstraintsClaim:     "delegation_constraints",
		PurposeClaim:         "purpose",
	}
}

// WithDefaults returns m with every empty field set to its default.
func (m ClaimMapping) WithDefaults() ClaimMapping {
	d := DefaultClaimMapping()
	def := func(v *string, dv string) {
		if *v == "" {
			*v = dv
		}
	}
	def(&m.UserClaim, d.UserClaim)
	def(&m.ActorClaim, d.ActorClaim)
	def(&m.GroupsClaim, d.GroupsClaim)
	def(&m.DelegatorClaim, d.DelegatorClaim)
	def(&m.DelegatorGroupsClaim, d.DelegatorGroupsClaim)
	def(&m.ChainClaim, d.ChainClaim)
	def(&m.ConstraintsClaim, d.ConstraintsClaim)
	def(&m.PurposeClaim, d.PurposeClaim)
	return m
}

// ErrClaims is wrapped by every error FromClaims returns.
var ErrClaims = errors.New("identity: malformed claims")

func claimErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrClaims, fmt.Sprintf(format, args...))
}

// FromClaims maps verified token claims to the agent, the user and the
// delegation between them. Pass only claims whose signature was checked.
// The maps in the result may share values with claims; treat both as
// read-only.
//
// Three shapes are recognised:
//
//   - RFC 8693 (the actor claim is present): the user claim is the user; the
//     outermost act.sub is the current actor, which is the agent; each nested
//     act is the actor before it (RFC 8693 §4.1). The chain is
//     [user, oldest actor, …, agent]. Agent.Claims is the outermost act
//     object without its nested act; User.Claims is every claim but act.
//   - OIDC-A (the delegator claim is present): "sub" (or AgentClaim) is the
//     agent, the delegator claim the user, the chain claim the chain (the
//     user is prepended and the agent appended when the chain does not
//     already start and end with them; absent, it is [user, agent]).
//     Agent.Claims is the whole claim set; the user has no claims.
//   - Neither: the user claim is the user. The agent comes from AgentClaim
//     when configured, else it is left empty for the door to fill from mTLS
//     or static config: a bare `sub` cannot say whether it is a human or a
//     workload, and guessing "agent" would let a user token pose as one.
//
// Constraints and purpose are read in every shape. Agent.Authn is "jwt"
// when the agent came from the claims. A token carrying both act and a
// delegator is ambiguous and refused.
func FromClaims(claims map[string]any, m ClaimMapping) (pdp.Agent, pdp.User, pdp.Delegation, error) {
	m = m.WithDefaults()
	var (
		agent pdp.Agent
		user  pdp.User
		del   pdp.Delegation
	)
	if claims == nil {
		return agent, user, del, claimErr("no claims")
	}
	act, hasAct := claims[m.ActorClaim]
	_, hasDelegator := claims[m.DelegatorClaim]
	if hasAct && hasDelegator {
		return agent, user, del, claimErr("both %q and %q present; refusing to guess which names the user", m.ActorClaim, m.DelegatorClaim)
	}

	var err error
	if del.Constraints, err = objectClaim(claims, m.ConstraintsClaim); err != nil {
		return agent, user, del, err
	}
	if del.Purpose, _, err = stringClaim(claims, m.PurposeClaim); err != nil {
		return agent, user, del, err
	}

	switch {
	case hasDelegator:
		agentClaim := "sub"
		if m.AgentClaim != "" {
			agentClaim = m.AgentClaim
		}
		if agent.ID, err = requiredString(claims, agentClaim); err != nil {
			return agent, user, del, err
		}
		if user.ID, err = requiredString(claims, m.DelegatorClaim); err != nil {
			return agent, user, del, err
		}
		if user.Groups, err = groupsClaim(claims, m.DelegatorGroupsClaim); err != nil {
			return agent, user, del, err
		}
		chain, err := chainClaim(claims, m.ChainClaim)
		if err != nil {
			return agent, user, del, err
		}
		del.Chain = frame(chain, user.ID, agent.ID)
		agent.Claims = claims
		agent.Authn = "jwt"

	case hasAct:
		if user.ID, err = requiredString(claims, m.UserClaim); err != nil {
			return agent, user, del, err
		}
		actors, current, err := actorChain(act, m.ActorClaim)
		if err != nil {
			return agent, user, del, err
		}
		agent.ID = actors[len(actors)-1]
		agent.Claims = current
		agent.Authn = "jwt"
		del.Chain = make([]string, 0, len(actors)+1)
		del.Chain = append(del.Chain, user.ID)
		del.Chain = append(del.Chain, actors...)
		if user.Groups, err = groupsClaim(claims, m.GroupsClaim); err != nil {
			return agent, user, del, err
		}
		user.Claims = without(claims, m.ActorClaim)

	default:
		var ok bool
		if user.ID, ok, err = stringClaim(claims, m.UserClaim); err != nil {
			return agent, user, del, err
		}
		if ok && user.ID == "" {
			return agent, user, del, claimErr("claim %q is empty", m.UserClaim)
		}
		if m.AgentClaim != "" {
			if agent.ID, err = requiredString(claims, m.AgentClaim); err != nil {
				return agent, user, del, err
			}
			agent.Authn = "jwt"
		}
		if user.ID == "" && agent.ID == "" {
			return agent, user, del, claimErr("claim %q names nobody", m.UserClaim)
		}
		if user.Groups, err = groupsClaim(claims, m.GroupsClaim); err != nil {
			return agent, user, del, err
		}
		user.Claims = claims
		if user.ID != "" && agent.ID != "" {
			del.Chain = []string{user.ID, agent.ID}
		}
	}
	return agent, user, del, nil
}

// actorChain walks nested actor claims. It returns the actors oldest first
// (so the current actor is last) and the current actor's own claims.
func actorChain(act any, actorClaim string) ([]string, map[string]any, error) {
	var rev []string // current actor first
	var current map[string]any
	for depth := 1; ; depth++ {
		if depth > MaxActDepth {
			return nil, nil, claimErr("%q nested deeper than %d", actorClaim, MaxActDepth)
		}
		obj, ok := act.(map[string]any)
		if !ok {
			return nil, nil, claimErr("%q at depth %d is %s, not an object", actorClaim, depth, typeName(act))
		}
		sub, err := requiredString(obj, "sub")
		if err != nil {
			return nil, nil, fmt.Errorf("%q at depth %d: %w", actorClaim, depth, err)
		}
		rev = append(rev, sub)
		next, more := obj[actorClaim]
		if depth == 1 {
			current = obj
			if more {
				current = without(obj, actorClaim)
			}
		}
		if !more {
			break
		}
		act = next
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, current, nil
}

// chainClaim reads an OIDC-A chain: strings, or objects naming the party in
// "sub" (an "iss" beside it scopes the sub and is not part of the id).
func chainClaim(claims map[string]any, name string) ([]string, error) {
	v, ok := claims[name]
	if !ok {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, claimErr("%q is %s, not an array", name, typeName(v))
	}
	if len(arr) > MaxChainLength {
		return nil, claimErr("%q has %d elements, more than %d", name, len(arr), MaxChainLength)
	}
	out := make([]string, 0, len(arr)+2)
	for i, e := range arr {
		switch e := e.(type) {
		case string:
			if e == "" {
				return nil, claimErr("%q[%d] is empty", name, i)
			}
			out = append(out, e)
		case map[string]any:
			sub, err := requiredString(e, "sub")
			if err != nil {
				return nil, fmt.Errorf("%q[%d]: %w", name, i, err)
			}
			out = append(out, sub)
		default:
			return nil, claimErr("%q[%d] is %s, not a string or object", name, i, typeName(e))
		}
	}
	return out, nil
}

// frame makes a chain start with the user and end with the agent, so policy
// can rely on chain[0] and chain[-1] whatever the issuer put in it.
func frame(chain []string, user, agent string) []string {
	if len(chain) == 0 || chain[0] != user {
		chain = append([]string{user}, chain...)
	}
	if chain[len(chain)-1] != agent {
		chain = append(chain, agent)
	}
	return chain
}

func groupsClaim(claims map[string]any, name string) ([]string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return nil, nil
	}
	switch v := v.(type) {
	case string:
		f := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		if len(f) == 0 {
			return nil, nil
		}
		return f, nil
	case []any:
		out := make([]string, 0, len(v))
		for i, g := range v {
			s, ok := g.(string)
			if !ok {
				return nil, claimErr("%q[%d] is %s, not a string", name, i, typeName(g))
			}
			out = append(out, s)
		}
		return out, nil
	case []string: // claims built in Go rather than decoded from JSON
		return v, nil
	default:
		return nil, claimErr("%q is %s, not an array or string", name, typeName(v))
	}
}

func objectClaim(claims map[string]any, name string) (map[string]any, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return nil, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, claimErr("%q is %s, not an object", name, typeName(v))
	}
	if len(obj) == 0 {
		return nil, nil
	}
	return obj, nil
}

// stringClaim returns a claim that must be a string when present.
func stringClaim(claims map[string]any, name string) (string, bool, error) {
	v, ok := claims[name]
	if !ok {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", true, claimErr("%q is %s, not a string", name, typeName(v))
	}
	return s, true, nil
}

func requiredString(claims map[string]any, name string) (string, error) {
	s, ok, err := stringClaim(claims, name)
	if err != nil {
		return "", err
	}
	if !ok || s == "" {
		return "", claimErr("%q missing or empty", name)
	}
	return s, nil
}

func without(m map[string]any, key string) map[string]any {
	out := maps.Clone(m)
	delete(out, key)
	return out
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, uint64, float32, int32:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("a %T", v)
	}
}
