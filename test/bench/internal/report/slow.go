package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Variant names of the slow-IPAM storms and the mixed storm.
const (
	// AddUnbounded is cnishim with no ADD bound, the other lanes at their defaults.
	AddUnbounded = "cnishim-add=unbounded"
	// CPUBound is cnishim with the default limits and the ADD bound fixed (not adaptive):
	// one chain per CPU.
	CPUBound = "cnishim-add=cpu"
)

// Targets of the slow-IPAM storms (cnishim's default against AddUnbounded) and of the mixed
// storm (cnishim's default against the best fixed ADD bound).
const (
	slowRateTarget  = 0.95
	slowP99Target   = 1.05
	mixedRateTarget = 0.9
)

// SlowIPAM writes the "Slow IPAM storms" section: a table per storm with cnishim's
// default, ADD unbounded, the fixed CPU bound and go-cni, then the default's ratios to ADD
// unbounded against the targets.
func SlowIPAM(w io.Writer, runs []runner.Run, cells []runner.Cell, defaults impls.Limits) Verdicts {
	x := newIndex(runs)
	var v Verdicts
	fmt.Fprintf(w, "## Slow IPAM storms\n\n")
	fmt.Fprintf(w, "The pods' only network is bridge + a slow IPAM + portmap (cniVersion 1.0.0): the IPAM waits the given time on ADD, spending no CPU (an IPAM asking a server), then host-local allocates a real address, which DEL releases at once. cnishim's default limits: %s. *%s* leaves ADD unbounded with the other lanes at their defaults; *%s* is the default limits with the ADD bound fixed at %d (not adaptive). Latencies include any time queued for admission.\n\n",
		impls.LimitsString(&defaults), AddUnbounded, CPUBound, defaults.Add)
	for _, c := range cells {
		stormTable(w, x, c)
	}
	fmt.Fprintf(w, "### Slow IPAM targets\n\n")
	fmt.Fprintf(w, "cnishim at its default against ADD unbounded, per round, median over rounds: setup pods/s ≥ %.2f ×, setup p99 ≤ %.2f ×. The fixed CPU bound's setup pods/s against ADD unbounded is shown for reference.\n\n", slowRateTarget, slowP99Target)
	fmt.Fprintf(w, "| storm | setup pods/s default / unbounded | setup p99 default / unbounded | setup pods/s fixed CPU bound / unbounded |\n|---|--:|--:|--:|\n")
	for _, c := range cells {
		cn, ub, cpu := x.get(c, Cnishim), x.get(c, AddUnbounded), x.get(c, CPUBound)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", c.Short(),
			v.check(ratio(cn, ub, setupRate), false, slowRateTarget), v.check(ratio(cn, ub, setupPct(99)), true, slowP99Target),
			num(ratio(cpu, ub, setupRate), 2))
	}
	fmt.Fprintln(w)
	writeLeakSummary(w, only(runs, cells))
	fmt.Fprintf(w, "![Slow IPAM storms: setup pods/s by callers per variant](bench-slow-ipam.png)\n\n")
	return v
}

// Mixed writes the "Mixed storm" section: a table per storm with cnishim's default and the
// fixed ADD bounds, then the default against the best of them.
func Mixed(w io.Writer, runs []runner.Run, cells []runner.Cell) Verdicts {
	x := newIndex(runs)
	var v Verdicts
	fmt.Fprintf(w, "## Mixed storm (two networks)\n\n")
	fmt.Fprintf(w, "Every pod is on the benchmark network (bridge + host-local + portmap, CPU-bound); every other pod is also on a second network with the slow IPAM (`cninetwork.Pod.ExtraNetworks`, interface %s), as a secondary storage network whose IPAM asks a server. *cnishim-add=k* fixes the ADD bound at k (not adaptive), the other lanes at their defaults. go-cni is not measured: it attaches every network it loads to every pod, so it has no run with a second network on half the pods that would compare.\n\n", impls.ExtraIfName)
	for _, c := range cells {
		stormTable(w, x, c)
	}
	fmt.Fprintf(w, "### Mixed storm target\n\n")
	fmt.Fprintf(w, "cnishim at its default: setup pods/s ≥ %.1f × the best fixed ADD bound's (median pods/s of each bound, unbounded included).\n\n", mixedRateTarget)
	fmt.Fprintf(w, "| storm | best fixed bound | its setup pods/s, p99 | default setup pods/s, p99 | default / best pods/s |\n|---|---|--:|--:|--:|\n")
	for _, c := range cells {
		cn := x.get(c, Cnishim)
		best, bestName := math.NaN(), ""
		for _, name := range x.variants[c] {
			if name == Cnishim {
				continue
			}
			if r := x.get(c, name).median(setupRate); !math.IsNaN(r) && (math.IsNaN(best) || r > best) {
				best, bestName = r, name
			}
		}
		verdict, bestCell := "not measured", "–"
		if !math.IsNaN(best) {
			verdict = v.check(cn.median(setupRate)/best, false, mixedRateTarget)
			bestCell = fmt.Sprintf("%s pods/s, %s", num(best, 1), msCell(x.get(c, bestName).median(setupPct(99))))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s pods/s, %s | %s |\n", c.Short(), orNone(bestName), bestCell,
			num(cn.median(setupRate), 1), msCell(cn.median(setupPct(99))), verdict)
	}
	fmt.Fprintln(w)
	writeLeakSummary(w, only(runs, cells))
	return v
}

// only returns the runs on the given cells.
func only(runs []runner.Run, cells []runner.Cell) []runner.Run {
	var out []runner.Run
	for _, r := range runs {
		if slices.Contains(cells, r.Cell) {
			out = append(out, r)
		}
	}
	return out
}

var slowColors = map[string]color.Color{
	AddUnbounded: color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	CPUBound:     color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// SlowIPAMPlot writes a PNG with one panel per storm size and IPAM wait: the setup pods/s
// (median over rounds) of each variant by the number of callers.
func SlowIPAMPlot(path string, runs []runner.Run, cells []runner.Cell) error {
	x := newIndex(runs)
	type group struct {
		pods int
		wait string
		pm   bool
	}
	var groups []group
	byGroup := map[group][]runner.Cell{}
	for _, c := range cells {
		g := group{c.Pods, c.IPAMWait.String(), c.PortMap}
		if _, ok := byGroup[g]; !ok {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], c)
	}
	var panels []*plot.Plot
	for _, g := range groups {
		cs := byGroup[g]
		slices.SortFunc(cs, func(a, b runner.Cell) int { return a.Callers - b.Callers })
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%d pods, %s IPAM", g.pods, g.wait)
		if g.pm {
			p.Title.Text += ", hostPort"
		}
		p.X.Label.Text = "callers"
		p.Y.Label.Text = "setup pods/s (median)"
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		for _, name := range []string{Cnishim, AddUnbounded, CPUBound, GoCNI} {
			var xys plotter.XYs
			for _, c := range cs {
				if r := x.get(c, name).median(setupRate); !math.IsNaN(r) {
					xys = append(xys, plotter.XY{X: float64(c.Callers), Y: r})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, s, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			col := colors[name]
			if col == nil {
				col = slowColors[name]
			}
			l.Color, s.Color = col, col
			l.Width = vg.Points(1.5)
			p.Add(l, s)
			label := name
			if name == Cnishim {
				label = "cnishim (default)"
			}
			p.Legend.Add(label, l, s)
		}
		panels = append(panels, p)
	}
	return saveGrid(path, panels, 2, 5*vg.Inch)
}
