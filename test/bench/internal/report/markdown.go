package report

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

// Meta describes the machine and the run, printed above the tables.
type Meta struct {
	Date        string
	CPUModel    string
	Cores       int
	Kernel      string
	Plugins     string
	GoCNI       string
	GoVersion   string
	Rounds      int
	ExtraRounds int
	Command     string
}

// Variant names the report knows.
const (
	Cnishim   = "cnishim"
	Unbounded = "cnishim-unbounded"
	GoCNI     = "go-cni"
	Floor     = "floor"
)

// SweepName is the variant name of cnishim with a fixed ADD bound of k.
func SweepName(k int) string { return fmt.Sprintf("cnishim-add=%d", k) }

// Verdicts counts the targets met and missed.
type Verdicts struct{ Pass, Miss, Unmeasured int }

func (v *Verdicts) check(x float64, le bool, target float64) string {
	switch {
	case math.IsNaN(x):
		v.Unmeasured++
		return "not measured"
	case le && x <= target, !le && x >= target:
		v.Pass++
		return fmt.Sprintf("%.2f PASS", x)
	default:
		v.Miss++
		return fmt.Sprintf("**%.2f MISS**", x)
	}
}

func num(x float64, prec int) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, x)
}

// WriteMeta writes the machine and run description.
func WriteMeta(w io.Writer, m Meta) {
	fmt.Fprintf(w, "Measured %s on %d cores (%s), Linux %s, %s; CNI plugins %s (bridge + host-local + portmap, cniVersion 1.0.0), containerd/go-cni %s. ",
		m.Date, m.Cores, m.CPUModel, m.Kernel, m.GoVersion, m.Plugins, m.GoCNI)
	fmt.Fprintf(w, "Rounds: %d for the real-plugin scenarios, %d for the other storms, the ADD bound sweep and the slow-IPAM and mixed storms; implementations interleaved within each round; figures are medians over rounds (max: over all rounds).\n\n", m.Rounds, m.ExtraRounds)
	fmt.Fprintf(w, "Rerun: `%s`\n\n", m.Command)
}

// RealPlugin writes the "Real-plugin benchmark" section for the given cells: a table per
// cell, then the ratios against go-cni and the floor with the targets.
func RealPlugin(w io.Writer, runs []runner.Run, cells []runner.Cell) Verdicts {
	x := newIndex(runs)
	var v Verdicts
	fmt.Fprintf(w, "## Real-plugin benchmark\n\n")
	fmt.Fprintf(w, "Each run sets N pods up with the given number of callers at once, then tears them all down the same way, in a fresh worker process per run; latencies are per call as the caller sees it. *shim CPU* is the worker's own CPU per pod (set-up and teardown), *plugin CPU* that of the plugin processes and everything they ran (iptables); *peak RSS* is the worker's. The floor is raw libcni `AddNetworkList`/`DelNetworkList` on the same conflist without loopback: what the plugins alone cost.\n\n")
	for _, c := range cells {
		fmt.Fprintf(w, "### %s\n\n", c)
		fmt.Fprintf(w, "| implementation | setup p50 | p90 | p99 | max | teardown p50 | p90 | p99 | max | setup pods/s | teardown pods/s | shim CPU/pod | plugin CPU/pod | peak RSS |\n")
		fmt.Fprintf(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, name := range []string{Cnishim, GoCNI, Floor} {
			s := x.get(c, name)
			if len(s.runs) == 0 {
				fmt.Fprintf(w, "| %s | not measured: %s |||||||||||||\n", name, orNone(s.skipped))
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s ms | %s ms | %s MiB |\n", name,
				msCell(s.median(setupPct(50))), msCell(s.median(setupPct(90))), msCell(s.median(setupPct(99))), msCell(s.max(setupPct(100))),
				msCell(s.median(teardownPct(50))), msCell(s.median(teardownPct(90))), msCell(s.median(teardownPct(99))), msCell(s.max(teardownPct(100))),
				num(s.median(setupRate), 1), num(s.median(teardownRate), 1),
				num(s.median(selfCPU), 2), num(s.median(pluginCPU), 1), num(s.median(peakRSS), 1))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "### Ratios and targets\n\n")
	fmt.Fprintf(w, "Per-round ratios, median over rounds. Targets: setup p50 ≤ 0.92 × go-cni and ≤ 1.03 × floor; teardown p50 ≤ 0.97 × go-cni and ≤ 1.03 × floor; setup pods/s ≥ go-cni with 8 and 32 callers.\n\n")
	fmt.Fprintf(w, "| scenario | setup p50 vs go-cni | setup p50 vs floor | teardown p50 vs go-cni | teardown p50 vs floor | setup pods/s vs go-cni |\n")
	fmt.Fprintf(w, "|---|--:|--:|--:|--:|--:|\n")
	for _, c := range cells {
		cn, gc, fl := x.get(c, Cnishim), x.get(c, GoCNI), x.get(c, Floor)
		rate := "–"
		if c.Callers >= 8 {
			rate = v.check(ratio(cn, gc, setupRate), false, 1)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", c,
			v.check(ratio(cn, gc, setupPct(50)), true, 0.92), v.check(ratio(cn, fl, setupPct(50)), true, 1.03),
			v.check(ratio(cn, gc, teardownPct(50)), true, 0.97), v.check(ratio(cn, fl, teardownPct(50)), true, 1.03),
			rate)
	}
	fmt.Fprintln(w)
	writeLeakSummary(w, runs)
	fmt.Fprintf(w, "![Set-up latency distribution per implementation and scenario](bench-setup-latency.png)\n\n")
	return v
}

func msCell(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if x >= 100 {
		return fmt.Sprintf("%.0f ms", x)
	}
	return fmt.Sprintf("%.1f ms", x)
}

func orNone(s string) string {
	if s == "" {
		return "no run"
	}
	return s
}

func writeLeakSummary(w io.Writer, runs []runner.Run) {
	measured, clean := 0, 0
	var dirty []string
	for i := range runs {
		r := &runs[i]
		if r.Result == nil {
			continue
		}
		measured++
		if r.Leaks == "none" {
			clean++
		} else {
			dirty = append(dirty, fmt.Sprintf("round %d %s %s: %s", r.Round, r.Cell, r.Variant.Name, r.Leaks))
		}
	}
	fmt.Fprintf(w, "Leak check after every run (host-local reservations, veths on the bridge, links left in pod namespaces, libcni cache files, iptables and nftables rules and chains naming a pod, network namespace mounts): %d of %d runs clean.", clean, measured)
	for _, d := range dirty {
		fmt.Fprintf(w, "\n- %s", d)
	}
	fmt.Fprintf(w, "\n\n")
}

// Admission writes the "Admission (pod-start storms)" section: a table per storm cell with
// cnishim at its default limits, unbounded, go-cni and the fixed ADD bounds swept, then the
// targets; oneCaller cells check that the default costs nothing without contention.
func Admission(w io.Writer, runs []runner.Run, storms, oneCaller []runner.Cell, defaults impls.Limits) Verdicts {
	x := newIndex(runs)
	var v Verdicts
	fmt.Fprintf(w, "## Admission (pod-start storms)\n\n")
	fmt.Fprintf(w, "cnishim's default admission limits on this machine: %s. *cnishim-unbounded* sets every lane to 0 (no bound, as go-cni); *cnishim-add=k* fixes the ADD bound at k with the other lanes at their defaults. Latencies include any time queued for admission.\n\n", impls.LimitsString(&defaults))
	for _, c := range storms {
		stormTable(w, x, c)
	}

	fmt.Fprintf(w, "### Targets\n\n")
	fmt.Fprintf(w, "cnishim at its default: setup pods/s ≥ 1.3 × go-cni and ≥ 0.95 × the best fixed bound of the sweep (median pods/s of each bound); setup p99 ≤ 0.6 × go-cni's. Ratios against go-cni are per round, median over rounds.\n\n")
	fmt.Fprintf(w, "| storm | setup pods/s vs go-cni | vs best fixed bound | setup p99 vs go-cni |\n|---|--:|--:|--:|\n")
	for _, c := range storms {
		cn, gc := x.get(c, Cnishim), x.get(c, GoCNI)
		best, bestK := math.NaN(), 0
		for _, name := range x.variants[c] {
			var k int
			if _, err := fmt.Sscanf(name, "cnishim-add=%d", &k); err != nil {
				continue
			}
			if r := x.get(c, name).median(setupRate); !math.IsNaN(r) && (math.IsNaN(best) || r > best) {
				best, bestK = r, k
			}
		}
		vsBest := "not measured"
		if !math.IsNaN(best) {
			vsBest = v.check(cn.median(setupRate)/best, false, 0.95) + fmt.Sprintf(" (best: add=%d, %.1f pods/s)", bestK, best)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", c,
			v.check(ratio(cn, gc, setupRate), false, 1.3), vsBest, v.check(ratio(cn, gc, setupPct(99)), true, 0.6))
	}
	fmt.Fprintln(w)
	if len(oneCaller) > 0 {
		fmt.Fprintf(w, "One caller at a time, cnishim at its default must be no slower than unbounded (within noise: setup pods/s ratio ≥ 0.97, per round, median):\n\n")
		fmt.Fprintf(w, "| scenario | setup pods/s default vs unbounded | setup p50 default / unbounded |\n|---|--:|--:|\n")
		for _, c := range oneCaller {
			cn, ub := x.get(c, Cnishim), x.get(c, Unbounded)
			fmt.Fprintf(w, "| %s | %s | %s |\n", c, v.check(ratio(cn, ub, setupRate), false, 0.97), num(ratio(cn, ub, setupPct(50)), 2))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "![Storms: set-up throughput and p99 of cnishim's default, unbounded and go-cni; the ADD bound sweep](bench-admission.png)\n\n")
	return v
}

// stormTable writes a storm cell's table: each variant measured on it but the floor, its
// setup pods/s, p50 and p99 and teardown pods/s, medians over rounds.
func stormTable(w io.Writer, x *index, c runner.Cell) {
	fmt.Fprintf(w, "### %s\n\n", c)
	fmt.Fprintf(w, "| variant | rounds | setup pods/s | setup p50 | setup p99 | teardown pods/s |\n|---|--:|--:|--:|--:|--:|\n")
	for _, name := range x.variants[c] {
		if name == Floor {
			continue
		}
		s := x.get(c, name)
		if len(s.runs) == 0 {
			fmt.Fprintf(w, "| %s | 0 | not measured: %s ||||\n", name, orNone(s.skipped))
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", name, len(s.runs),
			num(s.median(setupRate), 1), msCell(s.median(setupPct(50))), msCell(s.median(setupPct(99))), num(s.median(teardownRate), 1))
	}
	fmt.Fprintln(w)
}

// Summary is one line for the end of the report.
func Summary(vs ...Verdicts) string {
	var t Verdicts
	for _, v := range vs {
		t.Pass += v.Pass
		t.Miss += v.Miss
		t.Unmeasured += v.Unmeasured
	}
	return strings.TrimSpace(fmt.Sprintf("Targets: %d PASS, %d MISS, %d not measured.", t.Pass, t.Miss, t.Unmeasured))
}
