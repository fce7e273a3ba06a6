package envoyauthz

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/identity"
)

// mapIdentity fills agent, user and delegation. The agent is the mTLS peer
// (Envoy's source principal, the peer certificate, or XFCC); a JWT (from
// jwt_authn metadata or a verified Bearer header) adds the user and the
// delegation chain and may name the agent when there is no mTLS. A token
// issued to a different agent than the one on the connection is refused.
func (s *Server) mapIdentity(ctx context.Context, attrs *authv3.AttributeContext, in *pdp.Input, authz string) *rejection {
	src := attrs.GetSource()
	in.Context.Source.Address = peerAddress(src.GetAddress())
	in.Context.Source.Principal = src.GetPrincipal()

	mtlsID := src.GetPrincipal()
	if mtlsID == "" && src.GetCertificate() != "" {
		id, err := spiffeIDFromURLPEM(src.GetCertificate())
		if err != nil {
			return reject(0, "peer certificate: %v", err)
		}
		mtlsID = id
	}
	if mtlsID == "" && s.cfg.XFCC.Trust {
		if xfcc, ok := in.Action.HTTP.Headers["x-forwarded-client-cert"]; ok {
			id, err := s.xfccAgent(xfcc)
			if err != nil {
				return &rejection{rule: ruleUnauthenticated, msg: "x-forwarded-client-cert: " + err.Error(), public: "the client certificate header is not vouched for"}
			}
			mtlsID = id
		}
	}

	claims, rej := s.claims(ctx, attrs, authz)
	if rej != nil {
		return rej
	}
	if claims != nil {
		agent, user, deleg, err := identity.FromClaims(claims, s.cfg.JWT.Claims)
		if err != nil {
			return unauthenticated("token claims: "+err.Error(), "invalid_token")
		}
		if mtlsID != "" && agent.ID != "" && agent.ID != mtlsID {
			return &rejection{rule: ruleAgentMismatch, msg: fmt.Sprintf("the token was issued to agent %q but the connection is agent %q", agent.ID, mtlsID)}
		}
		in.Agent, in.User, in.Delegation = agent, user, deleg
	}
	if mtlsID != "" {
		in.Agent.ID = mtlsID
		in.Agent.Authn = "mtls"
	}
	return nil
}

// claims returns the JWT payload: jwt_authn's verified payload from
// metadata_context, or the Authorization Bearer token verified here.
// nil, nil means no token.
func (s *Server) claims(ctx context.Context, attrs *authv3.AttributeContext, authz string) (map[string]any, *rejection) {
	if s.cfg.JWTFrom != JWTFromHeader {
		ns := attrs.GetMetadataContext().GetFilterMetadata()[s.cfg.MetadataNamespace]
		if v, ok := ns.GetFields()[s.cfg.MetadataKey]; ok {
			p := v.GetStructValue()
			if p == nil {
				return nil, reject(0, "metadata %s.%s is not a JWT payload object", s.cfg.MetadataNamespace, s.cfg.MetadataKey)
			}
			return p.AsMap(), nil
		}
	}
	if s.cfg.JWTFrom == JWTFromMetadata || s.verifier == nil || authz == "" {
		return nil, nil
	}
	tok, ok := identity.BearerToken(authz)
	if !ok {
		// With verification configured an Authorization header must be one
		// Bearer token: Basic, two values or junk would otherwise pass as
		// "no token" and leave the user unnamed.
		return nil, unauthenticated("the Authorization header is not one Bearer token", "invalid_request")
	}
	claims, err := s.verifier.Verify(ctx, tok)
	if err != nil {
		switch {
		case errors.Is(err, identity.ErrToken):
			return nil, unauthenticated(err.Error(), identity.TokenClass(err))
		case errors.Is(err, identity.ErrKeysUnavailable):
			// Not the caller's fault, but nothing can be trusted yet.
			return nil, &rejection{rule: ruleUnauthenticated, status: 503, msg: err.Error(), public: "token verification keys are not available yet", retry: true}
		default:
			return nil, &rejection{rule: ruleUnauthenticated, msg: "the token cannot be verified: " + err.Error(), public: "the token cannot be verified"}
		}
	}
	return claims, nil
}

// unauthenticated is a 401 that tells the caller the class of the problem
// (invalid_token, expired, wrong audience, …) and logs the whole reason.
func unauthenticated(msg, class string) *rejection {
	code := "invalid_token"
	if class == "invalid_request" {
		code = class
	}
	auth := `Bearer error="` + code + `"`
	if class != code {
		auth += `, error_description="` + class + `"`
	}
	return &rejection{rule: ruleUnauthenticated, status: 401, msg: msg, public: class, authenticate: auth}
}

// xfccAgent reads the agent from x-forwarded-client-cert: the one SPIFFE
// URI SAN of the header's last element (the client the nearest proxy saw),
// which a proxy named in xfcc.by must have set (its By=).
func (s *Server) xfccAgent(h string) (string, error) {
	els, err := identity.ParseXFCC(h)
	if err != nil {
		return "", err
	}
	if len(els) == 0 {
		return "", errors.New("empty header")
	}
	last := els[len(els)-1]
	vouched := false
	for _, by := range last.By {
		if slices.Contains(s.cfg.XFCC.By, by) {
			vouched = true
		}
	}
	if !vouched && !slices.Contains(s.cfg.XFCC.By, "*") {
		return "", fmt.Errorf("set by %q, which is not in envoy.xfcc.by", last.By)
	}
	id, ok := last.Agent() // of the element just read, not a second parse
	if !ok {
		return "", errors.New("the last element has no single valid SPIFFE URI SAN")
	}
	return id, nil
}

// spiffeIDFromURLPEM reads Envoy's include_peer_certificate value: the
// client certificate, URL-encoded PEM. Envoy percent-encodes spaces; a
// form-style encoder writes '+' for them, and then also escapes base64's
// own '+', so the form decoding is the fallback.
func spiffeIDFromURLPEM(s string) (string, error) {
	var blk *pem.Block
	for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
		if raw, err := unescape(s); err == nil {
			if blk, _ = pem.Decode([]byte(raw)); blk != nil {
				break
			}
		}
	}
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", errors.New("not a URL-encoded PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	return identity.SPIFFEIDFromCert(cert)
}
