package main

import (
	"runtime"
	"strconv"
)

// autoProcs is the GOMAXPROCS agentpdp runs with when max_procs is 0: half
// the CPUs Go would use (which honours a cgroup CPU limit), rounded up.
// agentpdp sits beside Envoy or the agent it guards, and a check is ~20 µs
// of work: with a P per CPU, Go's scheduler hands each RPC between threads
// on different cores (gRPC reader → handler → writer) and spins idle ones
// looking for work. Measured on 2 cores shared with the load generator
// (ghz at its default): one P instead of two took the CPU per check at
// c=1 from ~240 to ~170 µs and p50 from ~0.32 to ~0.26 ms; at c=16 the
// same throughput with a tenth of the machine left idle (README,
// "Performance").
func autoProcs(cpus int) int {
	return max(1, (cpus+1)/2)
}

// setProcs applies max_procs unless GOMAXPROCS is in the environment (Go
// has applied it already, and an operator's choice wins; Go ignores a value
// that is not a positive number, and so do we). It returns the value in
// force and where it came from, for the startup log.
func setProcs(maxProcs int, env func(string) string) (int, string) {
	if v, err := strconv.Atoi(env("GOMAXPROCS")); err == nil && v > 0 {
		return runtime.GOMAXPROCS(0), "GOMAXPROCS"
	}
	n, from := maxProcs, "max_procs"
	if n == 0 {
		n, from = autoProcs(runtime.GOMAXPROCS(0)), "max_procs auto (half the CPUs)"
	}
	// Setting it stops Go following later changes of the cgroup CPU limit;
	// a restart picks them up.
	runtime.GOMAXPROCS(n)
	return n, from
}
