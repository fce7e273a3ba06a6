#!/usr/bin/env bash
# agentpdp's MCP door in the shared MCP proxy harness (shared/bench/mcp):
# direct, ToolHive with Cedar, and `agentpdp mcp` in front of the same Go
# echo upstream (and server-everything), in one run.
#
#   mcpproxy/bench/compare.sh                       # DUR=10s, PEERS="thvauthz"
#   DUR=3s EVERYTHING=0 mcpproxy/bench/compare.sh   # quick
#
# agentpdp decides with the built-in example policies, decision log on, as
# agent spiffe://example.org/agent/bench (added to a copy of the example
# inventory without a rate limit: the load would otherwise be the rate
# limit's, not the proxy's). The harness is copied to WORK; nothing in
# either tree is changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
HARNESS=${HARNESS:-$root/../shared/bench/mcp}
WORK=${WORK:-/tmp/agentpdp-mcp-bench}
[ -f "$HARNESS/compare.sh" ] || { echo "no harness at $HARNESS (set HARNESS)" >&2; exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$HARNESS"/. "$WORK"/
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/agentpdp" ./cmd/agentpdp)
pol="$WORK/policies"
mkdir -p "$pol"
for f in "$root"/policies/*.rego "$root"/policies/*.yaml; do
  case "$f" in *_test.rego|*_test.yaml) ;; *) cp "$f" "$pol/" ;; esac
done
cat >>"$pol/inventory.yaml" <<'YAML'

  # The benchmark's agent: the example rules apply, no rate limit.
  - id: spiffe://example.org/agent/bench
    owner_team: platform
    environment: dev
    allowed_actions: ["github.*", "everything.*"]
    allowed_user_groups: ["agent:self"]
YAML
export DUR=${DUR:-10s} PEERS=${PEERS-thvauthz} STATELESS=${STATELESS:-0}
export AGENTPDP_CMD="$WORK/agentpdp mcp --listen 127.0.0.1:18130 --upstream \$UPSTREAM_URL --policies $pol --data-dir $WORK/data --server github --agent spiffe://example.org/agent/bench"
cd "$WORK" && ./compare.sh
