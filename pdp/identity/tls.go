package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ServerTLS is a door's listener TLS; with ClientCAFile, callers must
// present a client certificate signed by it. Both doors use it, so an
// error names the door's config key (where: "envoy.tls", "mcp.tls").
type ServerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Validate checks the fields go together, without reading the files.
func (t *ServerTLS) Validate(where string) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New(where + ": cert_file and key_file go together")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		return errors.New(where + ": client_ca_file needs cert_file and key_file")
	}
	return nil
}

// Config reads the files; it is nil when TLS is off.
func (t *ServerTLS) Config(where string) (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.client_ca_file: %w", where, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.client_ca_file: %s holds no PEM certificate", where, t.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
