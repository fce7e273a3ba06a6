package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp"
)

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func TestFromClaims(t *testing.T) {
	const (
		alice    = "alice@example.com"
		planner  = "spiffe://example.org/agent/planner"
		reviewer = "spiffe://example.org/agent/code-reviewer"
	)
	tests := []struct {
		name    string
		claims  string
		mapping ClaimMapping
		agent   pdp.Agent
		user    pdp.User
		del     pdp.Delegation
	}{
		{
			name:   "rfc8693 single act",
			claims: `{"sub":"alice@example.com","iss":"idp","groups":["eng"],"act":{"sub":"spiffe://example.org/agent/code-reviewer"}}`,
			agent:  pdp.Agent{ID: reviewer, Authn: "jwt", Claims: map[string]any{"sub": reviewer}},
			user: pdp.User{ID: alice, Groups: []string{"eng"},
				Claims: map[string]any{"sub": alice, "iss": "idp", "groups": []any{"eng"}}},
			del: pdp.Delegation{Chain: []string{alice, reviewer}},
		},
		{
			// RFC 8693 §4.1: the outermost act is the current actor, nested
			// acts are prior actors; the chain runs from the human outwards.
			name:   "rfc8693 nested act",
			claims: `{"sub":"alice@example.com","act":{"sub":"spiffe://example.org/agent/code-reviewer","iss":"wl","act":{"sub":"spiffe://example.org/agent/planner"}}}`,
			agent:  pdp.Agent{ID: reviewer, Authn: "jwt", Claims: map[string]any{"sub": reviewer, "iss": "wl"}},
			user:   pdp.User{ID: alice, Claims: map[string]any{"sub": alice}},
			del:    pdp.Delegation{Chain: []string{alice, planner, reviewer}},
		},
		{
			name:   "rfc8693 three actors with purpose and constraints",
			claims: `{"sub":"u","purpose":"p","delegation_constraints":{"max_amount":100},"act":{"sub":"c","act":{"sub":"b","act":{"sub":"a"}}}}`,
			agent:  pdp.Agent{ID: "c", Authn: "jwt", Claims: map[string]any{"sub": "c"}},
			user: pdp.User{ID: "u", Claims: map[string]any{"sub": "u", "purpose": "p",
				"delegation_constraints": map[string]any{"max_amount": float64(100)}}},
			del: pdp.Delegation{Chain: []string{"u", "a", "b", "c"}, Purpose: "p",
				Constraints: map[string]any{"max_amount": float64(100)}},
		},
		{
			name: "oidc-a with object chain",
			claims: `{"sub":"spiffe://example.org/agent/code-reviewer","delegator_sub":"alice@example.com",
				"groups":["agents"],"delegator_groups":"eng, ops",
				"delegation_chain":[{"iss":"https://idp","sub":"spiffe://example.org/agent/planner"},{"sub":"spiffe://example.org/agent/code-reviewer"}],
				"delegation_constraints":{"allowed_tools":["github.*"]},"purpose":"review PR 42"}`,
			agent: pdp.Agent{ID: reviewer, Authn: "jwt"}, // Claims filled below
			user:  pdp.User{ID: alice, Groups: []string{"eng", "ops"}},
			del: pdp.Delegation{Chain: []string{alice, planner, reviewer}, Purpose: "review PR 42",
				Constraints: map[string]any{"allowed_tools": []any{"github.*"}}},
		},
		{
			name:   "oidc-a string chain already framed",
			claims: `{"sub":"r","delegator_sub":"u","delegation_chain":["u","p","r"]}`,
			agent:  pdp.Agent{ID: "r", Authn: "jwt"},
			user:   pdp.User{ID: "u"},
			del:    pdp.Delegation{Chain: []string{"u", "p", "r"}},
		},
		{
			name:   "oidc-a without chain",
			claims: `{"sub":"r","delegator_sub":"u"}`,
			agent:  pdp.Agent{ID: "r", Authn: "jwt"},
			user:   pdp.User{ID: "u"},
			del:    pdp.Delegation{Chain: []string{"u", "r"}},
		},
		{
			name:    "oidc-a with agent claim override",
			claims:  `{"sub":"x","client_id":"r","delegator_sub":"u"}`,
			mapping: ClaimMapping{AgentClaim: "client_id"},
			agent:   pdp.Agent{ID: "r", Authn: "jwt"},
			user:    pdp.User{ID: "u"},
			del:     pdp.Delegation{Chain: []string{"u", "r"}},
		},
		{
			name:   "plain token: sub is the user, agent left to the door",
			claims: `{"sub":"alice@example.com","groups":"eng ops,sre"}`,
			user: pdp.User{ID: alice, Groups: []string{"eng", "ops", "sre"},
				Claims: map[string]any{"sub": alice, "groups": "eng ops,sre"}},
		},
		{
			name:    "plain token with agent claim",
			claims:  `{"sub":"alice@example.com","azp":"spiffe://example.org/agent/code-reviewer"}`,
			mapping: ClaimMapping{AgentClaim: "azp"},
			agent:   pdp.Agent{ID: reviewer, Authn: "jwt"},
			user:    pdp.User{ID: alice, Claims: map[string]any{"sub": alice, "azp": reviewer}},
			del:     pdp.Delegation{Chain: []string{alice, reviewer}},
		},
		{
			name:    "custom user, actor and groups claims",
			claims:  `{"sub":"123","email":"alice@example.com","roles":["admin"],"actor":{"sub":"a1"}}`,
			mapping: ClaimMapping{UserClaim: "email", ActorClaim: "actor", GroupsClaim: "roles"},
			agent:   pdp.Agent{ID: "a1", Authn: "jwt", Claims: map[string]any{"sub": "a1"}},
			user: pdp.User{ID: alice, Groups: []string{"admin"},
				Claims: map[string]any{"sub": "123", "email": alice, "roles": []any{"admin"}}},
			del: pdp.Delegation{Chain: []string{alice, "a1"}},
		},
		{
			name:   "act nested exactly MaxActDepth",
			claims: nestedAct(MaxActDepth),
			agent:  pdp.Agent{ID: "a1", Authn: "jwt", Claims: map[string]any{"sub": "a1"}},
			user:   pdp.User{ID: "u", Claims: map[string]any{"sub": "u"}},
			del:    pdp.Delegation{Chain: depthChain(MaxActDepth)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := decode(t, tt.claims)
			if strings.HasPrefix(tt.name, "oidc-a") {
				tt.agent.Claims = claims // the whole token describes the agent
			}
			agent, user, del, err := FromClaims(claims, tt.mapping)
			if err != nil {
				t.Fatalf("FromClaims: %v", err)
			}
			if !reflect.DeepEqual(agent, tt.agent) {
				t.Errorf("agent\n got %#v\nwant %#v", agent, tt.agent)
			}
			if !reflect.DeepEqual(user, tt.user) {
				t.Errorf("user\n got %#v\nwant %#v", user, tt.user)
			}
			if !reflect.DeepEqual(del, tt.del) {
				t.Errorf("delegation\n got %#v\nwant %#v", del, tt.del)
			}
		})
	}
}

// nestedAct builds {"sub":"u","act":{"sub":"a1","act":{"sub":"a2",…}}}
// with depth actors; a1 is the current actor.
func nestedAct(depth int) string {
	var b strings.Builder
	b.WriteString(`{"sub":"u"`)
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, `,"act":{"sub":"a%d"`, i)
	}
	b.WriteString(strings.Repeat("}", depth+1))
	return b.String()
}

func depthChain(depth int) []string {
	chain := []string{"u"}
	for i := depth; i >= 1; i-- {
		chain = append(chain, fmt.Sprintf("a%d", i))
	}
	return chain
}

func TestFromClaimsDoesNotModifyInput(t *testing.T) {
	claims := decode(t, `{"sub":"u","act":{"sub":"b","act":{"sub":"a"}}}`)
	before := decode(t, `{"sub":"u","act":{"sub":"b","act":{"sub":"a"}}}`)
	if _, _, _, err := FromClaims(claims, ClaimMapping{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(claims, before) {
		t.Fatalf("claims modified: %v", claims)
	}
}

func TestFromClaimsErrors(t *testing.T) {
	tests := []struct {
		name, claims string
		mapping      ClaimMapping
		want         string // substring of the error
	}{
		{"act is a string", `{"sub":"u","act":"agent"}`, ClaimMapping{}, `"act" at depth 1 is a string`},
		{"act is null", `{"sub":"u","act":null}`, ClaimMapping{}, "is null"},
		{"act is an array", `{"sub":"u","act":[{"sub":"a"}]}`, ClaimMapping{}, "is an array"},
		{"nested act not an object", `{"sub":"u","act":{"sub":"a","act":7}}`, ClaimMapping{}, "depth 2 is a number"},
		{"act without sub", `{"sub":"u","act":{"iss":"x"}}`, ClaimMapping{}, `"sub" missing`},
		{"act sub not a string", `{"sub":"u","act":{"sub":42}}`, ClaimMapping{}, `"sub" is a number`},
		{"act too deep", nestedAct(MaxActDepth + 1), ClaimMapping{}, "deeper than 16"},
		{"act without user", `{"act":{"sub":"a"}}`, ClaimMapping{}, `"sub" missing`},
		{"sub not a string", `{"sub":123}`, ClaimMapping{}, `"sub" is a number`},
		{"sub not a string with act", `{"sub":["u"],"act":{"sub":"a"}}`, ClaimMapping{}, `"sub" is an array`},
		{"sub empty", `{"sub":""}`, ClaimMapping{}, `"sub" is empty`},
		{"nobody named", `{"iss":"x"}`, ClaimMapping{}, "names nobody"},
		{"agent claim missing", `{"sub":"u"}`, ClaimMapping{AgentClaim: "azp"}, `"azp" missing`},
		{"act and delegator", `{"sub":"a","delegator_sub":"u","act":{"sub":"a"}}`, ClaimMapping{}, "both"},
		{"delegator not a string", `{"sub":"a","delegator_sub":{"id":"u"}}`, ClaimMapping{}, `"delegator_sub" is an object`},
		{"oidc-a without sub", `{"delegator_sub":"u"}`, ClaimMapping{}, `"sub" missing`},
		{"chain element a number", `{"sub":"a","delegator_sub":"u","delegation_chain":["u",7]}`, ClaimMapping{}, "[1] is a number"},
		{"chain element empty", `{"sub":"a","delegator_sub":"u","delegation_chain":[""]}`, ClaimMapping{}, "[0] is empty"},
		{"chain object without sub", `{"sub":"a","delegator_sub":"u","delegation_chain":[{"iss":"x"}]}`, ClaimMapping{}, `"sub" missing`},
		{"chain not an array", `{"sub":"a","delegator_sub":"u","delegation_chain":"u a"}`, ClaimMapping{}, "not an array"},
		{"chain too long", `{"sub":"a","delegator_sub":"u","delegation_chain":[` + strings.Repeat(`"x",`, MaxChainLength) + `"x"]}`, ClaimMapping{}, "more than 64"},
		{"constraints not an object", `{"sub":"u","delegation_constraints":["x"]}`, ClaimMapping{}, "not an object"},
		{"purpose not a string", `{"sub":"u","purpose":1}`, ClaimMapping{}, `"purpose" is a number`},
		{"group not a string", `{"sub":"u","groups":["a",1]}`, ClaimMapping{}, `"groups"[1] is a number`},
		{"groups a number", `{"sub":"u","groups":5}`, ClaimMapping{}, "not an array or string"},
		{"delegator groups wrong", `{"sub":"a","delegator_sub":"u","delegator_groups":true}`, ClaimMapping{}, "a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := FromClaims(decode(t, tt.claims), tt.mapping)
			if err == nil {
				t.Fatal("want an error, got nil")
			}
			if !errors.Is(err, ErrClaims) {
				t.Errorf("error %v does not wrap ErrClaims", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if _, _, _, err := FromClaims(nil, ClaimMapping{}); !errors.Is(err, ErrClaims) {
		t.Errorf("nil claims: got %v", err)
	}
}

func TestClaimMappingDefaults(t *testing.T) {
	got := ClaimMapping{GroupsClaim: "roles"}.WithDefaults()
	want := DefaultClaimMapping()
	want.GroupsClaim = "roles"
	if got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
	if want.AgentClaim != "" {
		t.Fatalf("agent claim must default to none, got %q", want.AgentClaim)
	}
}
