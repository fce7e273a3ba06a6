#!/usr/bin/env bash
# agentpdp's MCP door in the shared MCP proxy harness (shared/bench/mcp):
# direct, ToolHive with Cedar, and `agentpdp mcp` in front of the same Go
# echo upstream (and server-everything), in one run.
#
#   mcpproxy/bench/compare.sh                       # DUR=10s, PEERS="thvauthz"
#   DUR=3s EVERYTHING=0 mcpproxy/bench/compare.sh   # quick
#
# Then the floor (mcpproxy/bench/floor: a do-nothing net/http proxy, what a
# second HTTP hop alone costs on this host; with http.Transport and with
# agentpdp's own upstream client) beside a fresh direct row, and agentpdp
# in front of server-everything.
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
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$WORK/agentpdp" ./cmd/agentpdp &&
  go build -o "$WORK/bin/floor" ./mcpproxy/bench/floor)
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

# wait_port PORT [TENTHS]: until something listens there, for at most
# TENTHS tenths of a second (default 100).
wait_port() { for _ in $(seq "${2:-100}"); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; }
# vs_direct LABEL: run.sh rows on stdin, each after the LABEL row of its c
# followed by its added p50, p99 and throughput ratio to that row.
vs_direct() {
  awk -v base="$1" '$1==base{p50[$2]=$5; p99[$2]=$7; rps[$2]=$4; print; next}
       {printf "%s |  +%d  +%d  %.2f\n", $0, $5-p50[$2], $7-p99[$2], $4/rps[$2]}'
}

# The floor, measured the same way right after, against its own direct row.
[ -x bin/echoserver ] || go build -o bin/echoserver ./echoserver
bin/echoserver -addr 127.0.0.1:18100 >/dev/null 2>&1 & echo_pid=$!
bin/floor -listen 127.0.0.1:18140 -upstream http://127.0.0.1:18100/mcp & floor_pid=$!
bin/floor -own -listen 127.0.0.1:18141 -upstream http://127.0.0.1:18100/mcp & own_pid=$!
trap 'kill $echo_pid $floor_pid $own_pid ${ev_pid:-} ${ap_pid:-} 2>/dev/null' EXIT
for p in 18100 18140 18141; do wait_port $p 50; done
eras=stateful; [ "$STATELESS" = 1 ] && eras="stateful stateless"
echo
echo "== floor: a do-nothing net/http proxy in front of the same upstream (+ and ratio vs the direct row just before) =="
echo "   floor: http.Transport upstream; floor-own: agentpdp's own upstream client"
for era in $eras; do
  { ERA=$era SERVER_PID=$echo_pid ./run.sh http://127.0.0.1:18100/mcp echo-direct
    ERA=$era SERVER_PID=$floor_pid ./run.sh http://127.0.0.1:18140/mcp floor
    ERA=$era SERVER_PID=$own_pid ./run.sh http://127.0.0.1:18141/mcp floor-own; } | vs_direct echo-direct
done

# agentpdp in front of server-everything (the harness puts only the peers
# there), beside a direct row of its own: the Node server restarts between
# the two so neither inherits the other's grown event store.
if [ "${EVERYTHING:-1}" = 1 ]; then
  echo
  echo "== server-everything (Node): direct, then through agentpdp (+ and ratio vs that direct row) =="
  every() { PORT=18101 NODE_OPTIONS="-r ./bind-loopback.cjs" node node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp >/dev/null 2>&1 & ev_pid=$!
    wait_port 18101; }
  every
  direct=$(SERVER_PID=$ev_pid ./run.sh http://127.0.0.1:18101/mcp every-direct)
  kill $ev_pid; wait $ev_pid 2>/dev/null || true
  every
  rm -rf "$WORK/data-every"
  "$WORK/agentpdp" mcp --listen 127.0.0.1:18131 --upstream http://127.0.0.1:18101/mcp --policies "$pol" --data-dir "$WORK/data-every" \
    --server everything --agent spiffe://example.org/agent/bench 2>"$WORK/agentpdp-every.log" & ap_pid=$!
  wait_port 18131
  { echo "$direct"; SERVER_PID=$ap_pid ./run.sh http://127.0.0.1:18131/mcp every-agentpdp; } | vs_direct every-direct
  echo "(every-agentpdp RSS is agentpdp's alone; every-direct's is the Node server's)"
fi
