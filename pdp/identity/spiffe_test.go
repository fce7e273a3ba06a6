package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func certWithURIs(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "agent"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestSPIFFEIDFromCert(t *testing.T) {
	const id = "spiffe://example.org/agent/code-reviewer"
	got, err := SPIFFEIDFromCert(certWithURIs(t, id))
	if err != nil || got != id {
		t.Fatalf("got %q, %v; want %q", got, err, id)
	}
	for name, cert := range map[string]*x509.Certificate{
		"nil":            nil,
		"no URI SAN":     certWithURIs(t),
		"two URI SANs":   certWithURIs(t, id, "spiffe://example.org/other"),
		"not spiffe":     certWithURIs(t, "https://example.org/agent"),
		"spiffe no host": certWithURIs(t, "spiffe:///agent"),
	} {
		if got, err := SPIFFEIDFromCert(cert); err == nil {
			t.Errorf("%s: got %q, want an error", name, got)
		}
	}
}

func TestParseXFCC(t *testing.T) {
	const hash = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
	tests := []struct {
		name string
		in   string
		want []XFCCElement
	}{
		{
			name: "envoy doc example",
			in:   `By=http://frontend.lyft.com;Hash=` + hash + `;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
			want: []XFCCElement{{By: []string{"http://frontend.lyft.com"}, Hash: hash,
				Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client", URI: []string{"http://testclient.lyft.com"}}},
		},
		{
			name: "two elements, several DNS SANs",
			in:   `By=spiffe://example.org/envoy1;Hash=aa;URI=spiffe://example.org/agent/a;DNS=a.example;DNS=b.example,By=spiffe://example.org/envoy2;Hash=bb;URI=spiffe://example.org/envoy1`,
			want: []XFCCElement{
				{By: []string{"spiffe://example.org/envoy1"}, Hash: "aa", URI: []string{"spiffe://example.org/agent/a"}, DNS: []string{"a.example", "b.example"}},
				{By: []string{"spiffe://example.org/envoy2"}, Hash: "bb", URI: []string{"spiffe://example.org/envoy1"}},
			},
		},
		{
			name: "quoted subject with commas, semicolons and escaped quotes",
			in:   `Hash=cc;Subject="CN=agent,O=Example\, Inc.;OU=\"ops\",C=DE";URI=spiffe://example.org/a`,
			want: []XFCCElement{{Hash: "cc", Subject: `CN=agent,O=Example, Inc.;OU="ops",C=DE`, URI: []string{"spiffe://example.org/a"}}},
		},
		{
			name: "case-insensitive keys, spaces between joined headers, unknown key ignored",
			in:   `hash=aa;uri=spiffe://example.org/a;Future=x , HASH=bb; URI="spiffe://example.org/b"`,
			want: []XFCCElement{
				{Hash: "aa", URI: []string{"spiffe://example.org/a"}},
				{Hash: "bb", URI: []string{"spiffe://example.org/b"}},
			},
		},
		{
			name: "url-encoded cert and chain, empty quoted subject",
			in:   `Hash=aa;Cert="-----BEGIN%20CERTIFICATE-----%0AMII%3D";Chain="x%3Dy";Subject=""`,
			want: []XFCCElement{{Hash: "aa", Cert: "-----BEGIN%20CERTIFICATE-----%0AMII%3D", Chain: "x%3Dy"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseXFCC(tt.in)
			if err != nil {
				t.Fatalf("ParseXFCC: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseXFCCErrors(t *testing.T) {
	for _, in := range []string{
		``,
		`,`,
		`Hash=aa,,Hash=bb`,
		`Hash=aa;`,
		`Hash`,
		`=aa`,
		`Hash=aa;Hash=bb`,
		`Subject="a";Subject=""`,
		`Subject="unterminated`,
		`Subject="a\`,
		`Subject="a"b;Hash=aa`,
		`Subject=a"b"`,
		`URI"x"=y`,
		strings.Repeat("a", MaxXFCCBytes+1),
	} {
		if got, err := ParseXFCC(in); err == nil {
			t.Errorf("ParseXFCC(%.40q) = %#v, want an error", in, got)
		}
	}
}

func TestAgentFromXFCC(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`By=spiffe://example.org/envoy;Hash=aa;URI=spiffe://example.org/agent/a`, "spiffe://example.org/agent/a", true},
		// The last element is the immediate client.
		{`Hash=aa;URI=spiffe://example.org/agent/a,Hash=bb;URI=spiffe://example.org/agent/b`, "spiffe://example.org/agent/b", true},
		{`Hash=aa;URI=spiffe://example.org/agent/a,Hash=bb;URI=https://example.org/b`, "", false},
		{`Hash=aa;URI=spiffe://example.org/agent/a,Hash=bb`, "", false},
		{`Hash=aa;URI=spiffe://example.org/a;URI=spiffe://example.org/b`, "", false},
		{`Hash=aa;URI=spiffe://Example.org/a`, "", false}, // not a valid SPIFFE ID
		{`Hash=aa;URI="spiffe://example.org/a`, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := AgentFromXFCC(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("AgentFromXFCC(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
