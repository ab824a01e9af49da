package confwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// quietContext is a context whose logger discards everything, so logging does not weigh on
// the figures.
func quietContext(b *testing.B) context.Context {
	return klog.NewContext(b.Context(), ktesting.NewLogger(ktesting.NopTL{}, ktesting.NewConfig(ktesting.Verbosity(0))))
}

// BenchmarkRenameToSnapshot measures the latency from a config file renamed into place to the
// snapshot reflecting it, with the default debounce, over at least 200 changes (b.N if
// larger). It reports the 50th and 99th percentiles in milliseconds; the target is a p99
// under the quiet window plus 50 ms.
func BenchmarkRenameToSnapshot(b *testing.B) {
	e := newEnv(b, "bridge", "portmap")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge", "portmap"))
	for i := range 20 {
		e.write(fmt.Sprintf("%02d-other.conflist", 20+i), conflist(fmt.Sprintf("other%d", i), "1.0.0", "bridge", "portmap"))
	}
	w := e.watcher()
	ctx, cancel := context.WithCancel(quietContext(b))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s, err := w.Wait(ctx, 0)
	if err != nil || s.Default == nil {
		b.Fatalf("first scan: %v %v", err, s)
	}

	n := max(b.N, 200)
	lat := make([]time.Duration, 0, n)
	path := filepath.Join(e.conf, "10-a.conflist")
	tmp := filepath.Join(e.conf, ".10-a.conflist.tmp")
	b.ResetTimer()
	for i := range n {
		data := []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"a","serial":%d,"plugins":[{"type":"bridge"},{"type":"portmap"}]}`, i))
		want := digestParts([2][]byte{nil, data})
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
		for s.Default == nil || s.Default.Digest != want {
			wctx, wcancel := context.WithTimeout(ctx, asyncDeadline)
			s, err = w.Wait(wctx, s.Generation)
			wcancel()
			if err != nil {
				b.Fatalf("change %d not seen: %v", i, err)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(float64(len(lat)), "changes")
}

// BenchmarkRescanUnchanged measures a full rescan of a directory of 100 and of 1,000 config
// files when nothing changed (the cost every event and resync pays), and reports the plugin
// execs per rescan, which must be zero. The cold first scan is reported as cold-ms.
func BenchmarkRescanUnchanged(b *testing.B) {
	for _, files := range []int{100, 1000} {
		b.Run(fmt.Sprintf("configs=%d", files), func(b *testing.B) {
			e := newEnv(b, "bridge", "portmap", "tuning")
			for i := range files {
				e.write(fmt.Sprintf("%04d-net.conflist", i), conflist(fmt.Sprintf("net%d", i), "1.0.0", "bridge", "portmap", "tuning"))
			}
			w := e.watcher()
			ctx := quietContext(b)
			start := time.Now()
			s := w.Scan(ctx)
			cold := time.Since(start)
			if len(s.Networks) != files {
				b.Fatalf("cold scan: %d networks, want %d; skipped %v", len(s.Networks), files, s.Skipped)
			}
			e.exec.versions()
			b.ResetTimer()
			for b.Loop() {
				if res := w.scan(ctx, false); res.snap != s {
					b.Fatal("an unchanged rescan published")
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.exec.versions())/float64(b.N), "execs/op")
			b.ReportMetric(float64(cold)/float64(time.Millisecond), "cold-ms")
		})
	}
}
