package report

import (
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

// rateRun is one run on c whose setup took wall for c.Pods pods, each pod p99ms.
func rateRun(c runner.Cell, variant string, wall time.Duration, p99ms int) runner.Run {
	r := run(1, variant)
	r.Cell = c
	for range c.Pods {
		r.Result.Setup.Latencies = append(r.Result.Setup.Latencies, time.Duration(p99ms)*time.Millisecond)
	}
	r.Result.Setup.Wall = wall
	return r
}

// TestSlowIPAMVerdicts: the default is set against ADD unbounded, for pods/s (at least 0.95
// times) and p99 (at most 1.05 times).
func TestSlowIPAMVerdicts(t *testing.T) {
	c := runner.Cell{Pods: 10, Callers: 8, IPAMWait: 500 * time.Millisecond}
	for _, tt := range []struct {
		name                string
		defaultWall, defP99 time.Duration
		want                []string
		pass, miss          int
	}{
		{"both met", 1020 * time.Millisecond, 1000, []string{"| 0.98 PASS | 1.00 PASS |"}, 2, 0},
		{"both missed", 2 * time.Second, 1100, []string{"| **0.50 MISS** | **1.10 MISS** |"}, 0, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runs := []runner.Run{
				rateRun(c, Cnishim, tt.defaultWall, int(tt.defP99)),
				rateRun(c, AddUnbounded, time.Second, 1000),
				rateRun(c, CPUBound, 4*time.Second, 4000),
				rateRun(c, GoCNI, time.Second, 1000),
			}
			var b strings.Builder
			v := SlowIPAM(&b, runs, []runner.Cell{c}, impls.Limits{Add: 2, Del: 8})
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, b.String())
				}
			}
			if !strings.Contains(b.String(), "| 0.25 |") {
				t.Errorf("report lacks the fixed CPU bound's ratio 0.25:\n%s", b.String())
			}
			if v.Pass != tt.pass || v.Miss != tt.miss {
				t.Errorf("verdicts = %+v, want %d pass, %d miss", v, tt.pass, tt.miss)
			}
		})
	}
}

// TestMixedAgainstBestBound: the default is set against the fastest fixed bound, whichever
// it is, and go-cni is said to be not comparable.
func TestMixedAgainstBestBound(t *testing.T) {
	c := runner.Cell{Pods: 10, Callers: 32, IPAMWait: 2 * time.Second, Mixed: true}
	runs := []runner.Run{
		rateRun(c, Cnishim, 1100*time.Millisecond, 900),
		rateRun(c, SweepName(2), 5*time.Second, 4000),
		rateRun(c, SweepName(16), time.Second, 800),
		rateRun(c, AddUnbounded, 2*time.Second, 1500),
	}
	var b strings.Builder
	v := Mixed(&b, runs, []runner.Cell{c})
	for _, w := range []string{"| cnishim-add=16 | 10.0 pods/s, 800 ms |", "| 0.91 PASS |", "go-cni is not measured"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
	if v.Pass != 1 || v.Miss != 0 {
		t.Errorf("verdicts = %+v, want 1 pass", v)
	}
}
