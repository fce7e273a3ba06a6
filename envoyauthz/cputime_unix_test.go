//go:build unix

package envoyauthz

import (
	"syscall"
	"testing"
)

// reportCPU adds a cpu-ns/op metric: process CPU time (all threads, GC
// included) per iteration. Unlike ns/op it does not grow when other
// processes compete for the cores.
func reportCPU(b *testing.B) func() {
	start := cpuNanos()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuNanos()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
