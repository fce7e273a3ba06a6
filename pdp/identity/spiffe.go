package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SPIFFEIDFromCert returns the SPIFFE ID of an X.509-SVID: its one URI SAN,
// which must be a valid spiffe:// ID. The caller must already have verified
// the certificate chain (the TLS handshake does).
func SPIFFEIDFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("identity: no client certificate")
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return "", fmt.Errorf("identity: client certificate: %w", err)
	}
	return id.String(), nil
}

// XFCCElement is one element of Envoy's x-forwarded-client-cert header:
// what one proxy saw of its client's certificate. Keys absent from the
// header leave their field empty; keys this package does not know are
// ignored so that a newer Envoy does not break parsing.
type XFCCElement struct {
	By      []string // URI SANs of the proxy's own certificate
	Hash    string   // SHA-256 of the client certificate, hex
	Cert    string   // URL-encoded PEM of the client certificate
	Chain   string   // URL-encoded PEM of the client chain
	Subject string   // client certificate subject
	URI     []string // client certificate URI SANs
	DNS     []string // client certificate DNS SANs
}

// MaxXFCCBytes refuses oversized headers before parsing.
const MaxXFCCBytes = 256 << 10

// ParseXFCC parses an x-forwarded-client-cert header value: elements
// separated by ",", key=value pairs separated by ";", keys
// case-insensitive, a value double-quoted when it holds , ; = or ", with
// \" (and \\) escaped inside quotes. Whitespace around elements and pairs
// is dropped, so headers joined with ", " parse too. Anything malformed,
// or a single-valued key given twice, is an error.
func ParseXFCC(h string) ([]XFCCElement, error) {
	if len(h) > MaxXFCCBytes {
		return nil, fmt.Errorf("identity: xfcc: %d bytes, more than %d", len(h), MaxXFCCBytes)
	}
	p := xfccParser{s: h}
	var out []XFCCElement
	for {
		e, err := p.element()
		if err != nil {
			return nil, fmt.Errorf("identity: xfcc: element %d: %w", len(out)+1, err)
		}
		out = append(out, e)
		if p.done() {
			return out, nil
		}
		p.i++ // the ',' that ended the element
	}
}

type xfccParser struct {
	s string
	i int
}

func (p *xfccParser) done() bool { return p.i >= len(p.s) }

func (p *xfccParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// element parses pairs up to a ',' outside quotes or the end.
func (p *xfccParser) element() (XFCCElement, error) {
	var e XFCCElement
	var seen uint8 // single-valued keys already set, one bit each
	for {
		p.skipSpace()
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != '=' && p.s[p.i] != ';' && p.s[p.i] != ',' && p.s[p.i] != '"' {
			p.i++
		}
		key := strings.TrimRight(p.s[start:p.i], " \t")
		if key == "" {
			return e, fmt.Errorf("empty key at offset %d", start)
		}
		if p.done() || p.s[p.i] != '=' {
			return e, fmt.Errorf("key %q has no value", key)
		}
		p.i++ // '='
		val, err := p.value()
		if err != nil {
			return e, fmt.Errorf("key %q: %w", key, err)
		}
		if err := e.set(key, val, &seen); err != nil {
			return e, err
		}
		if p.done() || p.s[p.i] == ',' {
			return e, nil
		}
		p.i++ // ';'
	}
}

// value parses a quoted or bare value and leaves p.i at ';', ',' or the end.
func (p *xfccParser) value() (string, error) {
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		for {
			if p.done() {
				return "", errors.New("unterminated quoted value")
			}
			c := p.s[p.i]
			p.i++
			if c == '"' {
				break
			}
			if c == '\\' {
				if p.done() {
					return "", errors.New("unterminated quoted value")
				}
				c = p.s[p.i]
				p.i++
			}
			b.WriteByte(c)
		}
		p.skipSpace()
		if !p.done() && p.s[p.i] != ';' && p.s[p.i] != ',' {
			return "", fmt.Errorf("unexpected %q after quoted value", p.s[p.i])
		}
		return b.String(), nil
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ';' && p.s[p.i] != ',' {
		if p.s[p.i] == '"' {
			return "", errors.New(`'"' inside an unquoted value`)
		}
		p.i++
	}
	return strings.TrimRight(p.s[start:p.i], " \t"), nil
}

func (e *XFCCElement) set(key, val string, seen *uint8) error {
	one := func(dst *string, bit uint8) error {
		if *seen&bit != 0 {
			return fmt.Errorf("key %q given twice", key)
		}
		*seen |= bit
		*dst = val
		return nil
	}
	switch strings.ToLower(key) {
	case "by":
		e.By = append(e.By, val)
	case "hash":
		return one(&e.Hash, 1)
	case "cert":
		return one(&e.Cert, 2)
	case "chain":
		return one(&e.Chain, 4)
	case "subject":
		return one(&e.Subject, 8)
	case "uri":
		e.URI = append(e.URI, val)
	case "dns":
		e.DNS = append(e.DNS, val)
	}
	return nil
}

// AgentFromXFCC returns the SPIFFE ID of the immediate client: the one URI
// SAN of the header's last element (Envoy appends the client it saw last).
// It reports false for a malformed header, a last element with no or
// several URI SANs, or a URI that is not a valid SPIFFE ID. Trust the
// header only when it comes from an Envoy that sanitizes it.
func AgentFromXFCC(h string) (string, bool) {
	els, err := ParseXFCC(h)
	if err != nil || len(els) == 0 {
		return "", false
	}
	return els[len(els)-1].Agent()
}

// Agent is the element's one URI SAN as a SPIFFE ID; false when it has
// no or several URI SANs, or the URI is not a valid SPIFFE ID.
func (e XFCCElement) Agent() (string, bool) {
	if len(e.URI) != 1 {
		return "", false
	}
	id, err := spiffeid.FromString(e.URI[0])
	if err != nil {
		return "", false
	}
	return id.String(), true
}
