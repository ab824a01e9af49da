//go:build linux

package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

// microTargets are the targets for the micro-benchmarks: benchmark name, metric,
// and the most it may be.
var microTargets = []struct {
	bench, metric string
	max           float64
	what          string
}{
	{"BenchmarkStatus/impl=cnishim", "p99-ns", 10_000, "Status p99 ≤ 10 µs"},
	{"BenchmarkGetPodNetworkStatus", "ns/op", 2_000, "GetPodNetworkStatus ≤ 2 µs"},
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// microReportCmd turns `go test -bench` output (several -count runs) into a markdown table
// of medians, with the targets checked.
func microReportCmd(args []string) error {
	fs := flag.NewFlagSet("cnibench micro-report", flag.ContinueOnError)
	in := fs.String("in", "_output/bench/micro.txt", "go test -bench output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	values := map[string]map[string][]float64{}
	var order []string
	var units []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		name := m[1]
		if values[name] == nil {
			values[name] = map[string][]float64{}
			order = append(order, name)
		}
		fields := strings.Fields(m[4])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			unit := fields[i+1]
			if _, ok := values[name][unit]; !ok && !containsStr(units, unit) {
				units = append(units, unit)
			}
			values[name][unit] = append(values[name][unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(order) == 0 {
		return fmt.Errorf("%s: no benchmark results", *in)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Micro-benchmarks\n\n`go test -bench` in `test/bench/micro` (output in `%s`; compare runs with benchstat). Medians over %d runs; p50/p99 are of single calls, timer overhead (~30 ns) included.\n\n", *in, len(values[order[0]]["ns/op"]))
	fmt.Fprintf(&b, "| benchmark | %s |\n|---|%s\n", strings.Join(units, " | "), strings.Repeat("--:|", len(units)))
	for _, name := range order {
		var cells []string
		for _, u := range units {
			cells = append(cells, formatMetric(runner.Median(values[name][u]), u))
		}
		fmt.Fprintf(&b, "| %s | %s |\n", strings.TrimPrefix(name, "Benchmark"), strings.Join(cells, " | "))
	}
	fmt.Fprintf(&b, "\n| target | measured | |\n|---|--:|---|\n")
	for _, t := range microTargets {
		v := runner.Median(values[t.bench][t.metric])
		verdict := "PASS"
		switch {
		case math.IsNaN(v):
			verdict = "not measured"
		case v > t.max:
			verdict = fmt.Sprintf("**MISS** by %.0f%%", (v/t.max-1)*100)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.what, formatMetric(v, t.metric), verdict)
	}
	writeStatusNote(&b, values)
	fmt.Fprintln(&b)
	fmt.Print(b.String())
	return nil
}

// writeStatusNote says what the Status rows compare: cnishim's cached answer, which may be a
// poll interval old, against go-cni's STATUS on each call, and go-cni against the same STATUS
// run now through cnishim's plugin executor.
func writeStatusNote(b *strings.Builder, values map[string]map[string][]float64) {
	med := func(name string) float64 { return runner.Median(values["BenchmarkStatus/impl="+name]["ns/op"]) }
	s, now, g := med("cnishim"), med("libcni-cnishim-exec"), med("go-cni")
	if math.IsNaN(s) {
		return
	}
	fmt.Fprintf(b, "\n`Status/impl=cnishim` is the Plugin's `Status`, which answers from the CNI STATUS result its background poller cached: the answer may be up to the poll interval old (5s; a new configuration is probed at once).")
	if !math.IsNaN(g) && s > 0 {
		fmt.Fprintf(b, " go-cni's `Status` execs STATUS of every plugin of the chain on each call: %.0f× cnishim's cached answer.", g/s)
	}
	if !math.IsNaN(now) {
		fmt.Fprintf(b, " Like for like, `Status/impl=libcni-cnishim-exec` asks the plugins now, as the poller does once per interval: libcni's `GetStatusNetworkList` on the same conflist through cnishim's plugin executor (the Plugin has no call that runs STATUS synchronously, so this is the closest to one, not a cnishim API)")
		if !math.IsNaN(g) && now > 0 {
			fmt.Fprintf(b, "; go-cni takes %.2f× its time", g/now)
		}
		fmt.Fprintf(b, ".")
	}
	fmt.Fprintln(b)
}

func containsStr(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func formatMetric(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	if strings.HasSuffix(unit, "ns") || unit == "ns/op" {
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.2f µs", v/1e3)
		}
		return fmt.Sprintf("%.0f ns", v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
