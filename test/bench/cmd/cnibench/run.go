//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/report"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"golang.org/x/sys/unix"
)

// saved is the results file: everything the report and the plots are made from.
type saved struct {
	Meta      report.Meta   `json:"meta"`
	Main      []runner.Cell `json:"main"`
	Storms    []runner.Cell `json:"storms"`
	OneCaller []runner.Cell `json:"oneCaller"`
	// SlowStorms are the slow-IPAM storms, Mixed the mixed storms (two networks).
	SlowStorms []runner.Cell `json:"slowStorms,omitempty"`
	Mixed      []runner.Cell `json:"mixed,omitempty"`
	Defaults   impls.Limits  `json:"defaults"`
	Runs       []runner.Run  `json:"runs"`
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cnibench", flag.ContinueOnError)
	binDir := fs.String("cni-bin-dir", "_output/cni/bin", "directory of the real CNI plugins")
	rounds := fs.Int("rounds", 3, "rounds of the real-plugin scenarios (cnishim, go-cni, floor; unbounded with one caller)")
	extraRounds := fs.Int("extra-rounds", 1, "rounds of the rest of the storms (unbounded, the storms outside the scenarios), of the ADD bound sweep and of the slow-IPAM and mixed storms")
	mainSpec := fs.String("scenarios", "100x1,200x8,400x32", "real-plugin scenarios: PODSxCALLERS, each with and without a hostPort (suffix +hp or -hp for only one)")
	stormSpec := fs.String("storms", "200x8,200x32,400x8,400x32", "admission storms, same syntax")
	sweepSpec := fs.String("sweep", "200x32-hp", "storms on which to sweep fixed ADD bounds, same syntax")
	sweepMax := fs.Int("sweep-max", 8, "largest fixed ADD bound of the sweep")
	quick := fs.Bool("quick", false, "smoke run: tiny scenarios, one round (overrides sizes and rounds)")
	out := fs.String("out", "_output/bench/results.json", "results file (JSON, every latency)")
	md := fs.String("markdown", "_output/bench/results.md", "markdown report file")
	plotDir := fs.String("plot-dir", "docs", "directory for bench-setup-latency.png and bench-admission.png")
	opTimeout := fs.Duration("op-timeout", 2*time.Minute, "timeout of each set-up or teardown call")
	settle := fs.Duration("settle", 10*time.Second, "longest wait for the CPUs to go quiet before each run")
	rerun := fs.String("rerun", "make bench", "the command the report says reruns the benchmark")
	microMD := fs.String("micro-md", "", "markdown of the micro-benchmarks (cnibench micro-report) to include after the real-plugin section")
	memoryMD := fs.String("memory-md", "", "markdown of the memory figures (cnibench memory) to include at the end")
	multinetMD := fs.String("multinet-md", "", "markdown of the multi-network scenario (cnibench multinet) to include after the real-plugin section")
	onlySpec := fs.String("only", "", "run only these scenarios: slow-ipam (the slow-IPAM storms and the mixed storm)")
	cnitest := fs.String("cnitest", "", "the cnitest test plugin's binary, the slow IPAM (needed by the slow-IPAM and mixed storms)")
	slowSpec := fs.String("slow-storms", "110x8,110x32,110x110,400x8,400x32,400x110", "slow-IPAM storms, PODSxCALLERS, without a hostPort unless suffixed +hp; empty for none")
	slowWaits := fs.String("slow-waits", "500ms,2s", "IPAM waits of the slow-IPAM storms")
	mixedSpec := fs.String("mixed", "400x32", "mixed storms (two networks, the slow one on half the pods), same syntax; empty for none")
	mixedWaits := fs.String("mixed-waits", "500ms,2s", "IPAM waits of the mixed storms")
	mixedBounds := fs.String("mixed-bounds", "2,4,8,16,32,64,0", "fixed ADD bounds of the mixed storms (0 is unbounded)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		*rounds, *extraRounds = 1, 1
		*mainSpec, *stormSpec, *sweepSpec, *sweepMax = "3x1,6x2,8x4", "6x2,8x4", "8x4+hp", 2
		*slowSpec, *slowWaits, *mixedSpec, *mixedWaits, *mixedBounds = "10x2,10x8", "100ms", "10x4", "100ms", "2,0"
		*settle = 0
	}
	switch *onlySpec {
	case "":
	case "slow-ipam":
		*mainSpec, *stormSpec, *sweepSpec = "", "", ""
	default:
		return fmt.Errorf("-only %q: want slow-ipam", *onlySpec)
	}
	mainCells, err := parseCells(*mainSpec)
	if err != nil {
		return err
	}
	storms, err := parseCells(*stormSpec)
	if err != nil {
		return err
	}
	sweep, err := parseCells(*sweepSpec)
	if err != nil {
		return err
	}
	slowCells, err := parseSlowCells(*slowSpec, *slowWaits, false)
	if err != nil {
		return err
	}
	mixedCells, err := parseSlowCells(*mixedSpec, *mixedWaits, true)
	if err != nil {
		return err
	}
	bounds, err := parseBounds(*mixedBounds)
	if err != nil {
		return err
	}
	if len(slowCells)+len(mixedCells) > 0 && *cnitest == "" {
		return errors.New("the slow-IPAM and mixed storms need -cnitest (go build ./test/plugins/cnitest)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it creates network namespaces, a bridge and iptables rules")
	}

	s := &saved{
		Meta:     meta(*binDir, *rounds, *extraRounds, *rerun),
		Main:     mainCells,
		Defaults: impls.DefaultLimits(),
	}
	plan, oneCaller := buildPlan(mainCells, storms, sweep, *sweepMax, *rounds, *extraRounds, s.Defaults)
	plan = append(plan, buildSlowPlan(slowCells, mixedCells, bounds, *extraRounds, s.Defaults)...)
	s.OneCaller = oneCaller
	s.Storms = storms
	s.SlowStorms, s.Mixed = slowCells, mixedCells
	fmt.Fprintf(os.Stderr, "cnibench: %d runs planned, roughly %s on 2 cores; results in %s\n",
		countRuns(plan), estimate(plan, *settle).Round(time.Minute), *out)

	start := time.Now()
	runs, runErr := runner.Execute(ctx, runner.Options{
		Plan: plan, BinDir: *binDir, OpTimeout: *opTimeout, Settle: *settle,
		Worker: []string{self, "worker"}, Log: os.Stderr, Cnitest: *cnitest,
		OnRun: func(runs []runner.Run) {
			s.Runs = runs
			_ = writeJSON(*out, s)
		},
	})
	s.Runs = runs
	fmt.Fprintf(os.Stderr, "cnibench: %d runs in %s\n", len(runs), time.Since(start).Round(time.Second))
	if err := writeJSON(*out, s); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if len(runs) > 0 {
		runErr = errors.Join(runErr, writeReport(s, *md, *plotDir, *microMD, *memoryMD, *multinetMD))
	}
	return runErr
}

// buildPlan lays out the runs: every real-plugin scenario with cnishim, go-cni and the floor
// (and cnishim unbounded where there is one caller, for the no-contention check) for rounds;
// for extraRounds, cnishim unbounded on the storms among those scenarios, the other storms
// with cnishim, unbounded and go-cni, and the sweep of fixed ADD bounds.
func buildPlan(mainCells, storms, sweep []runner.Cell, sweepMax, rounds, extraRounds int, defaults impls.Limits) (plan []runner.Item, oneCaller []runner.Cell) {
	cnishim := runner.Variant{Name: report.Cnishim, Impl: impls.Cnishim}
	unbounded := runner.Variant{Name: report.Unbounded, Impl: impls.Cnishim, Limits: &impls.Limits{}}
	gocni := runner.Variant{Name: report.GoCNI, Impl: impls.GoCNI}
	floor := runner.Variant{Name: report.Floor, Impl: impls.Floor}
	for _, c := range mainCells {
		vs := []runner.Variant{cnishim, gocni, floor}
		if c.Callers == 1 {
			vs = append(vs, unbounded)
			oneCaller = append(oneCaller, c)
		}
		plan = append(plan, runner.Item{Cell: c, Variants: vs, Rounds: rounds})
		if contains(storms, c) && c.Callers != 1 {
			plan = append(plan, runner.Item{Cell: c, Variants: []runner.Variant{unbounded}, Rounds: extraRounds})
		}
	}
	for _, c := range storms {
		if !contains(mainCells, c) {
			plan = append(plan, runner.Item{Cell: c, Variants: []runner.Variant{cnishim, unbounded, gocni}, Rounds: extraRounds})
		}
	}
	for _, c := range sweep {
		var vs []runner.Variant
		for k := 1; k <= sweepMax; k++ {
			vs = append(vs, fixedAdd(k, defaults))
		}
		plan = append(plan, runner.Item{Cell: c, Variants: vs, Rounds: extraRounds})
	}
	return plan, oneCaller
}

// fixedAdd is cnishim with the ADD bound fixed at k (0: unbounded), not adaptive, and the
// other lanes at their defaults.
func fixedAdd(k int, defaults impls.Limits) runner.Variant {
	l := defaults
	l.Add, l.AdaptiveAdd = k, false
	name := report.SweepName(k)
	if k == 0 {
		name = report.AddUnbounded
	}
	return runner.Variant{Name: name, Impl: impls.Cnishim, Limits: &l}
}

// buildSlowPlan lays out the slow-IPAM storms, each with cnishim's default, ADD unbounded,
// the fixed CPU bound (the default limits, not adaptive) and go-cni; and the mixed storms,
// each with cnishim's default and the fixed ADD bounds. All for rounds.
func buildSlowPlan(slow, mixed []runner.Cell, bounds []int, rounds int, defaults impls.Limits) []runner.Item {
	var plan []runner.Item
	cpu := defaults
	cpu.AdaptiveAdd = false
	for _, c := range slow {
		plan = append(plan, runner.Item{Cell: c, Rounds: rounds, Variants: []runner.Variant{
			{Name: report.Cnishim, Impl: impls.Cnishim},
			fixedAdd(0, defaults),
			{Name: report.CPUBound, Impl: impls.Cnishim, Limits: &cpu},
			{Name: report.GoCNI, Impl: impls.GoCNI},
		}})
	}
	for _, c := range mixed {
		vs := []runner.Variant{{Name: report.Cnishim, Impl: impls.Cnishim}}
		for _, k := range bounds {
			vs = append(vs, fixedAdd(k, defaults))
		}
		plan = append(plan, runner.Item{Cell: c, Variants: vs, Rounds: rounds})
	}
	return plan
}

func contains(cells []runner.Cell, c runner.Cell) bool {
	for _, x := range cells {
		if x == c {
			return true
		}
	}
	return false
}

func countRuns(plan []runner.Item) int {
	n := 0
	for _, it := range plan {
		n += it.Rounds * len(it.Variants)
	}
	return n
}

// estimate is a rough duration of the plan, from set-up plus teardown seconds per pod
// measured on 2 cores with the real plugins, and a few seconds per run for namespaces,
// settling and the leak check.
func estimate(plan []runner.Item, settle time.Duration) time.Duration {
	var sec float64
	for _, it := range plan {
		perPod := map[[2]bool]float64{{true, false}: 0.15, {true, true}: 0.26, {false, false}: 0.08, {false, true}: 0.19}[[2]bool{it.Cell.Callers == 1, it.Cell.PortMap}]
		sec += float64(it.Rounds*len(it.Variants)) * (float64(it.Cell.Pods)*perPod + 1.5 + settle.Seconds())
		// A slow IPAM adds its waits, as many at once as callers and the ADD bound allow.
		if w := it.Cell.IPAMWait.Seconds(); w > 0 {
			waits := float64(it.Cell.Pods)
			if it.Cell.Mixed {
				waits /= 2
			}
			for _, v := range it.Variants {
				width := it.Cell.Callers
				if v.Limits != nil && v.Limits.Add > 0 && !v.Limits.AdaptiveAdd {
					width = min(width, v.Limits.Add)
				}
				sec += float64(it.Rounds) * waits * w / float64(width)
			}
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// parseSlowCells parses the storms of spec (parseCells' syntax, but without a hostPort
// unless suffixed +hp) once for each IPAM wait of waits ("500ms,2s"); mixed marks them
// mixed storms.
func parseSlowCells(spec, waits string, mixed bool) ([]runner.Cell, error) {
	var fields []string
	for _, f := range strings.Split(spec, ",") {
		if f = strings.TrimSpace(f); f != "" && !strings.HasSuffix(f, "+hp") && !strings.HasSuffix(f, "-hp") {
			f += "-hp"
		}
		fields = append(fields, f)
	}
	cells, err := parseCells(strings.Join(fields, ","))
	if err != nil {
		return nil, err
	}
	var out []runner.Cell
	for _, w := range strings.Split(waits, ",") {
		if w = strings.TrimSpace(w); w == "" {
			continue
		}
		d, err := time.ParseDuration(w)
		if err != nil || d < time.Millisecond {
			return nil, fmt.Errorf("IPAM wait %q: want a duration of at least 1ms, e.g. 500ms or 2s", w)
		}
		for _, c := range cells {
			c.IPAMWait, c.Mixed = d, mixed
			out = append(out, c)
		}
	}
	return out, nil
}

// parseBounds parses "2,4,0": fixed ADD bounds, 0 for unbounded.
func parseBounds(spec string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(spec, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := strconv.Atoi(f)
		if err != nil || k < 0 {
			return nil, fmt.Errorf("ADD bound %q: want a count, 0 for unbounded", f)
		}
		out = append(out, k)
	}
	return out, nil
}

// parseCells parses "100x1,200x8+hp": pods x callers, with and without a hostPort unless
// suffixed +hp (only with) or -hp (only without).
func parseCells(spec string) ([]runner.Cell, error) {
	var cells []runner.Cell
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pm := []bool{false, true}
		switch {
		case strings.HasSuffix(f, "+hp"):
			f, pm = strings.TrimSuffix(f, "+hp"), []bool{true}
		case strings.HasSuffix(f, "-hp"):
			f, pm = strings.TrimSuffix(f, "-hp"), []bool{false}
		}
		ps, cs, ok := strings.Cut(f, "x")
		pods, err1 := strconv.Atoi(ps)
		callers, err2 := strconv.Atoi(cs)
		if !ok || err1 != nil || err2 != nil || pods < 1 || callers < 1 || pods > 20000 {
			return nil, fmt.Errorf("scenario %q: want PODSxCALLERS, e.g. 200x8 or 200x8+hp", f)
		}
		for _, p := range pm {
			cells = append(cells, runner.Cell{Pods: pods, Callers: callers, PortMap: p})
		}
	}
	return cells, nil
}

func meta(binDir string, rounds, extraRounds int, command string) report.Meta {
	m := report.Meta{
		Date:        time.Now().UTC().Format("2006-01-02"),
		Cores:       runtime.NumCPU(),
		GoVersion:   runtime.Version(),
		Rounds:      rounds,
		ExtraRounds: extraRounds,
		Command:     command,
		CPUModel:    "unknown CPU",
		Plugins:     "unknown version",
		GoCNI:       "unknown version",
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(binDir, ".version")); err == nil {
		m.Plugins = strings.TrimSpace(string(b))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/containerd/go-cni" {
				m.GoCNI = d.Version
			}
		}
	}
	return m
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeReport prints the markdown report to stdout and mdPath, and draws the plots.
func writeReport(s *saved, mdPath, plotDir, microMD, memoryMD, multinetMD string) error {
	var errs []error
	include := func(b *strings.Builder, path string) {
		if path == "" {
			return
		}
		md, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			return
		}
		b.Write(md)
	}
	var b strings.Builder
	var vs []report.Verdicts
	report.WriteMeta(&b, s.Meta)
	if len(s.Main) > 0 {
		vs = append(vs, report.RealPlugin(&b, s.Runs, s.Main))
	}
	include(&b, multinetMD)
	include(&b, microMD)
	if len(s.Storms) > 0 {
		vs = append(vs, report.Admission(&b, s.Runs, s.Storms, s.OneCaller, s.Defaults))
	}
	if len(s.SlowStorms) > 0 {
		vs = append(vs, report.SlowIPAM(&b, s.Runs, s.SlowStorms, s.Defaults))
	}
	if len(s.Mixed) > 0 {
		vs = append(vs, report.Mixed(&b, s.Runs, s.Mixed))
	}
	include(&b, memoryMD)
	fmt.Fprintf(&b, "%s\n", report.Summary(vs...))
	if _, err := io.WriteString(os.Stdout, b.String()); err != nil {
		errs = append(errs, err)
	}
	if mdPath != "" {
		if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
			errs = append(errs, err)
		} else if err := os.WriteFile(mdPath, []byte(b.String()), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	if plotDir != "" && len(s.Main) > 0 {
		errs = append(errs, report.SetupLatencyPlot(filepath.Join(plotDir, "bench-setup-latency.png"), s.Runs, byPortMap(s.Main), max(1, (len(s.Main)+1)/2)))
	}
	if plotDir != "" && len(s.Storms) > 0 {
		errs = append(errs, report.AdmissionPlot(filepath.Join(plotDir, "bench-admission.png"), s.Runs, s.Storms))
	}
	if plotDir != "" && len(s.SlowStorms) > 0 {
		errs = append(errs, report.SlowIPAMPlot(filepath.Join(plotDir, "bench-slow-ipam.png"), s.Runs, s.SlowStorms))
	}
	return errors.Join(errs...)
}

// byPortMap orders cells without a hostPort before those with one, so the plot has one row
// of each.
func byPortMap(cells []runner.Cell) []runner.Cell {
	var out []runner.Cell
	for _, pm := range []bool{false, true} {
		for _, c := range cells {
			if c.PortMap == pm {
				out = append(out, c)
			}
		}
	}
	return out
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("cnibench report", flag.ContinueOnError)
	in := fs.String("in", "_output/bench/results.json", "results file written by a run")
	md := fs.String("markdown", "_output/bench/results.md", "markdown report file")
	plotDir := fs.String("plot-dir", "docs", "directory for the plots")
	microMD := fs.String("micro-md", "", "markdown of the micro-benchmarks to include")
	memoryMD := fs.String("memory-md", "", "markdown of the memory figures to include")
	multinetMD := fs.String("multinet-md", "", "markdown of the multi-network scenario to include")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var s saved
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	return writeReport(&s, *md, *plotDir, *microMD, *memoryMD, *multinetMD)
}
