package identity

import (
	"context"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// benchToken is a realistic delegated token: user, groups, a two-hop act.
func benchToken(b *testing.B) (signer, string) {
	testKeys(b)
	rs := newSigner(b, jwa.RS256(), "rsa1", rsaKey)
	c := goodClaims()
	c["groups"] = []string{"eng", "platform"}
	c["act"] = map[string]any{"sub": "spiffe://example.org/agent/code-reviewer",
		"act": map[string]any{"sub": "spiffe://example.org/agent/planner"}}
	c["delegation_constraints"] = map[string]any{"allowed_tools": []string{"github.*"}}
	return rs, rs.sign(b, c)
}

func BenchmarkVerifyCached(b *testing.B) {
	rs, tok := benchToken(b)
	v := newTestVerifier(b, JWTConfig{JWKSFile: writeJWKS(b, rs.pub)})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyRS256Uncached(b *testing.B) {
	rs, tok := benchToken(b)
	v := newTestVerifier(b, JWTConfig{JWKSFile: writeJWKS(b, rs.pub), CacheSize: -1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromClaims(b *testing.B) {
	rs, tok := benchToken(b)
	v := newTestVerifier(b, JWTConfig{JWKSFile: writeJWKS(b, rs.pub)})
	claims, err := v.Verify(context.Background(), tok)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := FromClaims(claims, ClaimMapping{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAgentFromXFCC(b *testing.B) {
	const h = `By=spiffe://example.org/envoy;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="CN=agent,O=Example";URI=spiffe://example.org/agent/code-reviewer`
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := AgentFromXFCC(h); !ok {
			b.Fatal("no agent")
		}
	}
}
