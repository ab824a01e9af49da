package report

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

func run(round int, variant string, setupMs ...int) runner.Run {
	r := runner.Run{Round: round, Cell: runner.Cell{Pods: len(setupMs), Callers: 1}, Variant: runner.Variant{Name: variant},
		Result: &runner.Result{}}
	for _, ms := range setupMs {
		r.Result.Setup.Latencies = append(r.Result.Setup.Latencies, time.Duration(ms)*time.Millisecond)
	}
	r.Result.Setup.Wall = time.Second
	return r
}

// TestRatioPairsRounds checks that ratios are taken within a round and the median taken
// over rounds, and that a round missing one side is left out.
func TestRatioPairsRounds(t *testing.T) {
	runs := []runner.Run{
		run(1, Cnishim, 10), run(1, GoCNI, 20), // 0.5
		run(2, Cnishim, 30), run(2, GoCNI, 20), // 1.5
		run(3, Cnishim, 9), run(3, GoCNI, 10), // 0.9
		run(4, Cnishim, 1), // no go-cni in round 4
	}
	x := newIndex(runs)
	c := runs[0].Cell
	if got := ratio(x.get(c, Cnishim), x.get(c, GoCNI), setupPct(50)); got != 0.9 {
		t.Errorf("median ratio = %v, want 0.9", got)
	}
	if got := x.get(c, Cnishim).median(setupPct(50)); got != 9.5 {
		t.Errorf("median of cnishim's p50 over 4 rounds = %v, want 9.5", got)
	}
	if got := ratio(x.get(c, Cnishim), x.get(c, Floor), setupPct(50)); !math.IsNaN(got) {
		t.Errorf("ratio against an unmeasured variant = %v, want NaN", got)
	}
}

func TestVerdicts(t *testing.T) {
	var v Verdicts
	for _, c := range []struct {
		x      float64
		le     bool
		target float64
		want   string
	}{
		{0.9, true, 0.92, "PASS"},
		{0.93, true, 0.92, "MISS"},
		{1.3, false, 1.3, "PASS"},
		{1.29, false, 1.3, "MISS"},
		{math.NaN(), true, 1, "not measured"},
	} {
		if got := v.check(c.x, c.le, c.target); !strings.Contains(got, c.want) {
			t.Errorf("check(%v, le=%v, %v) = %q, want %s", c.x, c.le, c.target, got, c.want)
		}
	}
	if v.Pass != 2 || v.Miss != 2 || v.Unmeasured != 1 {
		t.Errorf("counts = %+v, want 2 pass, 2 miss, 1 unmeasured", v)
	}
}

// TestSkippedVariantIsReported checks that a variant that could not run says why in the
// tables instead of disappearing.
func TestSkippedVariantIsReported(t *testing.T) {
	c := runner.Cell{Pods: 1, Callers: 8}
	runs := []runner.Run{
		{Round: 1, Cell: c, Variant: runner.Variant{Name: Cnishim}, Skipped: "no admission yet"},
		run(1, GoCNI, 5),
	}
	runs[1].Cell = c
	var b strings.Builder
	Admission(&b, runs, []runner.Cell{c}, nil, impls.Limits{})
	if !strings.Contains(b.String(), "not measured: no admission yet") {
		t.Errorf("report does not say why cnishim was not measured:\n%s", b.String())
	}
}
