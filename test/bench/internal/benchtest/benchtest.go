// Package benchtest holds helpers for the benchmark's own tests and micro-benchmarks, which
// need the real plugins, and most of them root.
package benchtest

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/testing/roottest"
)

// RequireRoot stops the test when not run as root: it fails under make test and make bench,
// and skips elsewhere (see roottest).
func RequireRoot(tb testing.TB) {
	tb.Helper()
	roottest.Require(tb)
}

// CNIBinDir returns the real plugins' directory: $CNISHIM_TEST_CNI_BIN, else the repository's
// _output/cni/bin. It stops the test when the plugins are missing: it fails under make test and
// make bench, and skips elsewhere when not root (see roottest).
func CNIBinDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("CNISHIM_TEST_CNI_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "_output", "cni", "bin")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			roottest.Missing(tb, "CNI plugin %s missing in %s (run hack/install-cni-plugins.sh or set CNISHIM_TEST_CNI_BIN): %v", p, dir, err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}

// Latencies records the duration of individual operations of a benchmark loop, keeping the
// most recent ones (a bounded ring, so a long b.N does not grow memory), for percentiles.
type Latencies struct {
	d    []time.Duration
	next int
	full bool
}

// NewLatencies keeps up to n durations.
func NewLatencies(n int) *Latencies { return &Latencies{d: make([]time.Duration, n)} }

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.d[l.next] = d
	l.next++
	if l.next == len(l.d) {
		l.next, l.full = 0, true
	}
}

// Percentile returns the p-th percentile (nearest rank) of what was kept.
func (l *Latencies) Percentile(p float64) time.Duration {
	s := l.d[:l.next]
	if l.full {
		s = l.d
	}
	if len(s) == 0 {
		return 0
	}
	s = slices.Clone(s)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Report adds the p50 and p99 to the benchmark's output, in ns, next to ns/op.
func (l *Latencies) Report(b *testing.B) {
	b.ReportMetric(float64(l.Percentile(50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(l.Percentile(99).Nanoseconds()), "p99-ns")
}
