package mcpproxy

import (
	"slices"
	"strings"
	"testing"
)

// A stdio server's environment is an allow list: agentpdp's own secrets
// do not reach it, what the configuration names does.
func TestStdioEnvironmentIsAnAllowList(t *testing.T) {
	t.Setenv("AGENTPDP_SECRET_FOR_TEST", "do-not-pass")
	t.Setenv("WANTED_BY_SERVER", "yes")
	t.Setenv("PATH", "/usr/bin:/bin")
	env := Command{Env: []string{"GITHUB_TOKEN=from-config"}, Inherit: []string{"WANTED_BY_SERVER"}}.environ()
	joined := strings.Join(env, "\n")
	for _, want := range []string{"PATH=/usr/bin:/bin", "WANTED_BY_SERVER=yes", "GITHUB_TOKEN=from-config"} {
		if !slices.Contains(env, want) {
			t.Errorf("%s missing from %v", want, env)
		}
	}
	if strings.Contains(joined, "do-not-pass") {
		t.Errorf("agentpdp's own variable reached the server: %v", env)
	}
}
