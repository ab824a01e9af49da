//go:build linux

package framework

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Median is the median of ds (the upper one of an even count); 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// WriteBenchTable writes a benchmark's table to $CNISHIM_BENCH_OUT/name (default
// <repo>/_output/bench), for a look after the run.
func WriteBenchTable(t testing.TB, e *Env, name, table string) {
	t.Helper()
	out := cmp.Or(os.Getenv("CNISHIM_BENCH_OUT"), filepath.Join(e.Repo, "_output", "bench"))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, name), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
}
