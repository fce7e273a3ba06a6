package mcpproxy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Credentials are checked at start, each mistake named; secrets come from
// files or the environment, never inline.
func TestCredentialsConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UPSTREAM_TOKEN", "from-env")
	for _, tc := range []struct {
		cfg  CredentialsConfig
		want string
	}{
		{CredentialsConfig{Mode: "bogus"}, "is not none"},
		{CredentialsConfig{Mode: CredStatic}, "name a file or an environment variable"},
		{CredentialsConfig{Mode: CredStatic, ValueFile: f, ValueEnv: "UPSTREAM_TOKEN"}, "not both"},
		{CredentialsConfig{Mode: CredStatic, ValueEnv: "UNSET_FOR_TEST"}, "is empty"},
		{CredentialsConfig{Mode: CredClientCredentials, TokenURL: "ftp://x", ClientID: "c", ClientSecretFile: f}, "token_url"},
		{CredentialsConfig{Mode: CredTokenExchange, TokenURL: "https://as.test/token", ClientSecretFile: f}, "client_id"},
		{CredentialsConfig{Mode: CredClientCredentials, TokenURL: "https://as.test/token", ClientID: "c"}, "client_secret"},
	} {
		if _, err := NewCredentials(tc.cfg, http.DefaultClient, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []CredentialsConfig{{Mode: CredStatic, ValueFile: f}, {Mode: CredStatic, ValueEnv: "UPSTREAM_TOKEN", Header: "X-Api-Key"}} {
		c, err := NewCredentials(cfg, http.DefaultClient, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, v, info, err := c.Get(t.Context(), Identity{token: "callers-token"})
		if err != nil || (v != "s3cret" && v != "from-env") || (cfg.Header == "" && h != "Authorization") || info.Mode != CredStatic {
			t.Errorf("%+v: %q %q %+v %v", cfg, h, v, info, err)
		}
	}
	// Passthrough needs a caller token; none never sends one.
	pt, _ := NewCredentials(CredentialsConfig{Mode: CredPassthrough}, http.DefaultClient, nil)
	if _, _, _, err := pt.Get(t.Context(), Identity{}); err == nil {
		t.Error("passthrough without a caller token")
	}
	none, _ := NewCredentials(CredentialsConfig{}, http.DefaultClient, nil)
	if _, v, _, _ := none.Get(t.Context(), Identity{token: "callers-token"}); v != "" {
		t.Errorf("mode none sent %q", v)
	}
}
