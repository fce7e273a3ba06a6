package identity

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// formatXFCC writes elements back out, every value quoted; ParseXFCC must
// read it back to the same elements.
func formatXFCC(els []XFCCElement) string {
	q := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	var out []string
	for _, e := range els {
		var kv []string
		for _, v := range e.By {
			kv = append(kv, "By="+q(v))
		}
		for _, p := range []struct{ k, v string }{{"Hash", e.Hash}, {"Cert", e.Cert}, {"Chain", e.Chain}, {"Subject", e.Subject}} {
			if p.v != "" {
				kv = append(kv, p.k+"="+q(p.v))
			}
		}
		for _, v := range e.URI {
			kv = append(kv, "URI="+q(v))
		}
		for _, v := range e.DNS {
			kv = append(kv, "DNS="+q(v))
		}
		if len(kv) == 0 {
			kv = append(kv, "X=") // an element of unknown keys only
		}
		out = append(out, strings.Join(kv, ";"))
	}
	return strings.Join(out, ",")
}

func FuzzParseXFCC(f *testing.F) {
	for _, s := range []string{
		`By=http://frontend.lyft.com;Hash=468ed3;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
		`Hash=aa;URI=spiffe://example.org/a,Hash=bb;URI=spiffe://example.org/b;DNS=x;DNS=y`,
		`Subject="CN=a,O=Example\, Inc.;OU=\"ops\"";Cert="%2D%2D"`,
		`hash=a ; uri = b , HASH="c"`,
		`Subject="unterminated`,
		`=;,`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		els, err := ParseXFCC(h)
		if err != nil {
			if els != nil {
				t.Fatal("elements returned with an error")
			}
			return
		}
		if len(els) == 0 {
			t.Fatal("no elements and no error")
		}
		again, err := ParseXFCC(formatXFCC(els))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", formatXFCC(els), err)
		}
		if !reflect.DeepEqual(els, again) {
			t.Fatalf("round trip changed elements:\n %#v\n %#v", els, again)
		}
		if id, ok := AgentFromXFCC(h); ok && (len(els[len(els)-1].URI) != 1 || !strings.HasPrefix(id, "spiffe://")) {
			t.Fatalf("AgentFromXFCC accepted %q from %#v", id, els[len(els)-1])
		}
	})
}

func FuzzFromClaims(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","act":{"sub":"b","act":{"sub":"a"}}}`,
		`{"sub":"r","delegator_sub":"u","delegation_chain":[{"sub":"p","iss":"x"},"r"],"delegation_constraints":{"k":1},"purpose":"p"}`,
		`{"sub":"u","groups":"a, b"}`,
		`{"sub":"u","act":"x"}`,
		`{"sub":1}`,
		`{"delegator_sub":"u","sub":"a","delegation_chain":[1]}`,
		nestedAct(20),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var claims map[string]any
		if json.Unmarshal([]byte(s), &claims) != nil {
			return
		}
		for _, m := range []ClaimMapping{{}, {AgentClaim: "azp"}} {
			agent, user, del, err := FromClaims(claims, m)
			if err != nil {
				continue
			}
			if agent.ID == "" && user.ID == "" {
				t.Fatalf("no principal from %s", s)
			}
			if n := len(del.Chain); n > 0 {
				if del.Chain[0] != user.ID || del.Chain[n-1] != agent.ID {
					t.Fatalf("chain %v does not run from user %q to agent %q", del.Chain, user.ID, agent.ID)
				}
			}
			if agent.ID != "" && user.ID != "" && agent.ID != user.ID && len(del.Chain) < 2 {
				t.Fatalf("agent and user but chain %v", del.Chain)
			}
			if _, ok := user.Claims["act"]; ok {
				t.Fatalf("user claims keep act: %v", user.Claims)
			}
		}
	})
}
