#!/usr/bin/env bash
# Registers agentpdp's pdp.Decide in the shared side-by-side harness
# (shared/bench/pdp: OPA's prepared Rego eval and cel-go on the same 8-rule
# policy) and runs its agreement test and benchmark, then benchstat.
#
#   pdp/bench/sidebyside/compare.sh              # -count 6
#   COUNT=2 pdp/bench/sidebyside/compare.sh
#
# The harness is copied to WORK and pointed at this checkout with a replace
# directive; nothing in either tree is changed. Rows:
#   impl=agentpdp-{rego,cel}        the harness's decoded map → JSON →
#                                   pdp.DecodeInput → Decide, every op
#   impl=agentpdp-{rego,cel}-typed  the typed Input built once (as a door
#                                   builds it), copied and decided every op
#   impl=agentpdp-rego-cold         typed, context.time moved 1 ns per op, so
#                                   the Rego result cache never hits
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
HARNESS=${HARNESS:-$root/../shared/bench/pdp}
WORK=${WORK:-/tmp/agentpdp-pdp-sidebyside}
COUNT=${COUNT:-6}
[ -f "$HARNESS/decide_test.go" ] || { echo "no harness at $HARNESS (set HARNESS)" >&2; exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$HARNESS"/. "$WORK"/
cd "$WORK"
go mod edit -require=github.com/agentpdp/agentpdp@v0.0.0 -replace=github.com/agentpdp/agentpdp="$root"
cat >agentpdp_compare_test.go <<GO
//go:build pdpcompare

package pdpbench

import (
	"context"
	"encoding/json"
	"reflect"
	"time"

	"github.com/agentpdp/agentpdp/pdp"
)

func init() {
	for _, engine := range []string{"rego", "cel"} {
		set, err := pdp.LoadDir(context.Background(), "$here/"+engine)
		if err != nil {
			panic(err)
		}
		p := pdp.New(set, pdp.Options{})
		typed := func(in map[string]any) *pdp.Input {
			b, err := json.Marshal(in)
			if err != nil {
				panic(err)
			}
			x, err := pdp.DecodeInput(b)
			if err != nil {
				panic(err)
			}
			return x
		}
		extraDeciders = append(extraDeciders, Decider{"agentpdp-" + engine, func(ctx context.Context, in map[string]any) (string, error) {
			return string(p.Decide(ctx, typed(in)).Effect), nil
		}})
		// One conversion per distinct map: the harness passes the same map
		// every op of a benchmark and a fresh one per agreement case.
		var last uintptr
		var cached *pdp.Input
		once := func(in map[string]any) pdp.Input {
			if ptr := reflect.ValueOf(in).Pointer(); ptr != last || cached == nil {
				last, cached = ptr, typed(in)
			}
			return *cached
		}
		extraDeciders = append(extraDeciders, Decider{"agentpdp-" + engine + "-typed", func(ctx context.Context, in map[string]any) (string, error) {
			x := once(in)
			return string(p.Decide(ctx, &x).Effect), nil
		}})
		if engine == "rego" {
			var n time.Duration
			extraDeciders = append(extraDeciders, Decider{"agentpdp-rego-cold", func(ctx context.Context, in map[string]any) (string, error) {
				x := once(in)
				n++
				x.Context.Time = x.Context.Time.Add(n)
				return string(p.Decide(ctx, &x).Effect), nil
			}})
		}
	}
}
GO
go mod tidy >/dev/null 2>&1 || true
go test -tags pdpcompare -run TestDecidersAgree -count 1 .
go test -tags pdpcompare -run '^$' -bench Decide -benchmem -count "$COUNT" . | tee results.txt
BENCHSTAT=$(command -v benchstat || echo "$(go env GOPATH)/bin/benchstat")
[ -x "$BENCHSTAT" ] || GOBIN=$(dirname "$BENCHSTAT") go install golang.org/x/perf/cmd/benchstat@latest
"$BENCHSTAT" -col /impl results.txt
