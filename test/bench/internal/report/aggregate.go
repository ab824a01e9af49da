// Package report turns benchmark runs into markdown tables, target checks and plots.
package report

import (
	"math"
	"slices"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

// key names one variant on one cell.
type key struct {
	cell    runner.Cell
	variant string
}

// series is every measured run of one variant on one cell, by round.
type series struct {
	runs    []*runner.Run
	skipped string
}

// index groups runs by cell and variant; cells and variants keep the order they first ran
// in.
type index struct {
	m        map[key]*series
	cells    []runner.Cell
	variants map[runner.Cell][]string
}

func newIndex(runs []runner.Run) *index {
	x := &index{m: map[key]*series{}, variants: map[runner.Cell][]string{}}
	for i := range runs {
		r := &runs[i]
		k := key{r.Cell, r.Variant.Name}
		s, ok := x.m[k]
		if !ok {
			s = &series{}
			x.m[k] = s
			if len(x.variants[r.Cell]) == 0 {
				x.cells = append(x.cells, r.Cell)
			}
			x.variants[r.Cell] = append(x.variants[r.Cell], r.Variant.Name)
		}
		switch {
		case r.Skipped != "":
			s.skipped = r.Skipped
		case r.Result != nil && r.Result.InitError == "":
			s.runs = append(s.runs, r)
		}
	}
	return x
}

func (x *index) get(c runner.Cell, variant string) *series {
	if s := x.m[key{c, variant}]; s != nil {
		return s
	}
	return &series{}
}

// metric extracts one figure from a run.
type metric func(*runner.Run) float64

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func setupPct(p float64) metric {
	return func(r *runner.Run) float64 { return msOf(runner.Percentile(r.Result.Setup.Latencies, p)) }
}

func teardownPct(p float64) metric {
	return func(r *runner.Run) float64 { return msOf(runner.Percentile(r.Result.Teardown.Latencies, p)) }
}

func setupRate(r *runner.Run) float64    { return runner.PodsPerSec(&r.Result.Setup) }
func teardownRate(r *runner.Run) float64 { return runner.PodsPerSec(&r.Result.Teardown) }

// selfCPU and pluginCPU are CPU milliseconds per pod, set-up and teardown together.
func selfCPU(r *runner.Run) float64 {
	return msOf(r.Result.Setup.CPU.Self+r.Result.Teardown.CPU.Self) / float64(r.Cell.Pods)
}

func pluginCPU(r *runner.Run) float64 {
	return msOf(r.Result.Setup.CPU.Children+r.Result.Teardown.CPU.Children) / float64(r.Cell.Pods)
}

func peakRSS(r *runner.Run) float64 { return float64(r.Result.PeakRSSKiB) / 1024 }

// median is the median over rounds of m; NaN when nothing was measured.
func (s *series) median(m metric) float64 {
	xs := make([]float64, 0, len(s.runs))
	for _, r := range s.runs {
		xs = append(xs, m(r))
	}
	return runner.Median(xs)
}

// max is the largest value of m over rounds.
func (s *series) max(m metric) float64 {
	v := math.NaN()
	for _, r := range s.runs {
		if x := m(r); math.IsNaN(v) || x > v {
			v = x
		}
	}
	return v
}

// ratio is the median over rounds of m(a)/m(b), over the rounds in which both were
// measured; NaN when there is none.
func ratio(a, b *series, m metric) float64 {
	var xs []float64
	for _, ra := range a.runs {
		for _, rb := range b.runs {
			if ra.Round == rb.Round {
				if d := m(rb); d != 0 {
					xs = append(xs, m(ra)/d)
				}
			}
		}
	}
	return runner.Median(xs)
}

// latencies pools a phase's latencies over every round, in milliseconds, sorted.
func (s *series) latencies(setup bool) []float64 {
	var out []float64
	for _, r := range s.runs {
		ph := &r.Result.Teardown
		if setup {
			ph = &r.Result.Setup
		}
		for _, d := range ph.Latencies {
			out = append(out, msOf(d))
		}
	}
	slices.Sort(out)
	return out
}
