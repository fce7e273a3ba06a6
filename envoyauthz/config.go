package envoyauthz

import (
	"errors"
	"fmt"
	"time"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/agentpdp/agentpdp/pdp/identity"
)

// Defaults for Config.
const (
	DefaultAddr              = "127.0.0.1:9191"
	DefaultMetadataNamespace = "envoy.filters.http.jwt_authn"
	DefaultMetadataKey       = "jwt_payload"
	// DefaultTimeout is shorter than Envoy's 200 ms ext_authz default so that
	// agentpdp answers with an explicit deny instead of Envoy timing out.
	DefaultTimeout      = 150 * time.Millisecond
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxHeaderBytes matches Envoy's own 60 KiB header limit with room
	// for the pseudo-headers Envoy adds.
	DefaultMaxHeaderBytes = 64 << 10
	DefaultRetryAfter     = 30 * time.Second
)

// Where the JWT comes from (Config.JWTFrom).
const (
	// JWTFromHeader verifies the Authorization: Bearer token itself.
	JWTFromHeader = "header"
	// JWTFromMetadata takes the payload Envoy's jwt_authn filter verified
	// and put in metadata_context.
	JWTFromMetadata = "metadata"
	// JWTFromEither prefers jwt_authn metadata and falls back to verifying
	// the header when a verifier is configured.
	JWTFromEither = "either"
)

// Config is the `envoy:` section of agentpdp.yaml.
type Config struct {
	// Addr is host:port or unix:///path/to.sock.
	Addr string    `yaml:"addr"`
	TLS  TLSConfig `yaml:"tls"`
	// JWT configures verification of Authorization: Bearer tokens. Leave
	// empty to rely on Envoy's jwt_authn filter (jwt_from: metadata).
	JWT identity.JWTConfig `yaml:"jwt"`
	// JWTFrom is header, metadata or either (default either).
	JWTFrom string `yaml:"jwt_from"`
	// MetadataNamespace is the filter_metadata key jwt_authn writes to.
	MetadataNamespace string `yaml:"metadata_namespace"`
	// MetadataKey is jwt_authn's payload_in_metadata name.
	MetadataKey string `yaml:"metadata_key"`
	// XFCC says whether x-forwarded-client-cert may name the agent. A
	// client can send that header, so it is ignored unless configured.
	XFCC XFCCConfig `yaml:"xfcc"`
	// RedactParams are query and form parameters holding credentials,
	// redacted in the input and so in the decision log, besides
	// access_token (RFC 6750), which always is. Matched case-insensitively.
	RedactParams []string `yaml:"redact_params"`
	// ExtraMCPMethods are JSON-RPC methods outside the MCP specification
	// that a server behind Envoy serves: any other unknown method in a
	// JSON-RPC body is refused.
	ExtraMCPMethods []string `yaml:"extra_mcp_methods"`
	// DenyStatus is the HTTP status of a deny (default 403).
	DenyStatus int `yaml:"deny_status"`
	// ApproveStatus is the HTTP status while a call awaits approval
	// (default 403).
	ApproveStatus int `yaml:"approve_status"`
	// RetryAfter is sent with approval_pending answers (default 30s).
	RetryAfter time.Duration `yaml:"retry_after"`
	// ApprovalsURL is the approvals API's base URL, for the status_url
	// of a held request (set from approvals.public_url, not here).
	ApprovalsURL string `yaml:"-"`
	// Timeout bounds one Check, mapping and decision included (default
	// 150ms); an earlier gRPC deadline from Envoy wins.
	Timeout time.Duration `yaml:"timeout"`
	// TrustedHeaders sends x-agentpdp-agent and x-agentpdp-user upstream on
	// allow (and strips client-sent copies).
	TrustedHeaders bool `yaml:"trusted_headers"`
	// MaxBodyBytes: bodies longer than this are not parsed; a JSON or form
	// body over the limit is denied (default 1 MiB).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxHeaderBytes bounds the sum of header names and values (default
	// 64 KiB); larger requests are denied.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// XFCCConfig trusts x-forwarded-client-cert from the proxies named in By.
// Set Envoy's forward_client_cert_details to SANITIZE_SET (with
// set_current_client_cert_details uri: true), so Envoy replaces a
// client's header with what it saw itself.
type XFCCConfig struct {
	// Trust lets the URI SAN of the header's last element name the agent
	// when Envoy reports no peer principal.
	Trust bool `yaml:"trust"`
	// By are the identities (By= of the last element: the SPIFFE ID of the
	// Envoy that set it) allowed to vouch; "*" accepts any, relying on
	// SANITIZE_SET alone. Required with trust.
	By []string `yaml:"by"`
}

// TLSConfig serves the gRPC endpoint over TLS; with ClientCAFile, Envoy
// must present a client certificate signed by it.
type TLSConfig = identity.ServerTLS

// Defaults fills zero fields with their defaults.
func (c *Config) Defaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.JWTFrom == "" {
		c.JWTFrom = JWTFromEither
	}
	if c.MetadataNamespace == "" {
		c.MetadataNamespace = DefaultMetadataNamespace
	}
	if c.MetadataKey == "" {
		c.MetadataKey = DefaultMetadataKey
	}
	if c.DenyStatus == 0 {
		c.DenyStatus = 403
	}
	if c.ApproveStatus == 0 {
		c.ApproveStatus = 403
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// Validate reports the first invalid field of a defaulted Config.
func (c *Config) Validate() error {
	switch c.JWTFrom {
	case JWTFromHeader, JWTFromMetadata, JWTFromEither:
	default:
		return fmt.Errorf("envoy.jwt_from: %q is not header, metadata or either", c.JWTFrom)
	}
	if c.JWTFrom == JWTFromHeader && !c.JWT.Configured() {
		return errors.New("envoy.jwt_from: header needs envoy.jwt to say how tokens are verified")
	}
	for name, st := range map[string]int{"deny_status": c.DenyStatus, "approve_status": c.ApproveStatus} {
		if !envoyErrorStatus(st) {
			return fmt.Errorf("envoy.%s: %d is not an HTTP error status Envoy knows", name, st)
		}
	}
	if c.Timeout < 0 || c.RetryAfter < 0 || c.MaxBodyBytes < 0 || c.MaxHeaderBytes < 0 {
		return errors.New("envoy: timeout, retry_after, max_body_bytes and max_header_bytes must not be negative")
	}
	if c.XFCC.Trust && len(c.XFCC.By) == 0 {
		return errors.New(`envoy.xfcc.by: name the identities (By= in the header, the SPIFFE ID of the Envoy that sets it) allowed to vouch for a client certificate, or "*"`)
	}
	if !c.XFCC.Trust && len(c.XFCC.By) > 0 {
		return errors.New("envoy.xfcc.by is set but envoy.xfcc.trust is false: say trust: true to use x-forwarded-client-cert")
	}
	for _, m := range c.ExtraMCPMethods {
		if m == "" {
			return errors.New("envoy.extra_mcp_methods: an empty method name")
		}
	}
	return c.TLS.Validate("envoy.tls")
}

// envoyErrorStatus says whether Envoy's StatusCode enum has st as an error
// status (4xx/5xx): the enum has gaps, so the range alone is not enough.
func envoyErrorStatus(st int) bool {
	_, ok := typev3.StatusCode_name[int32(st)]
	return ok && st >= 400
}
