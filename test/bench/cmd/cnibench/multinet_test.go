//go:build linux

package main

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMultinetVerdict: the report sets the pod on three networks against the slowest network
// alone, says whether the target is met, and puts the CPU floor of the set-up at once with
// and without the shim's own CPU.
func TestMultinetVerdict(t *testing.T) {
	ms := time.Millisecond
	rows := func(a, b, c, all, seq time.Duration) [][]time.Duration {
		return [][]time.Duration{{a}, {b}, {c}, {all}, {seq}}
	}
	cores := time.Duration(runtime.NumCPU())
	for _, tt := range []struct {
		name      string
		lat       [][]time.Duration
		cpu, self time.Duration // of the set-up at once
		want      []string
	}{
		{"met", rows(10*ms, 20*ms, 15*ms, 22*ms, 45*ms), 0, 0, []string{"| 1.10 (met) |"}},
		{"at the target", rows(20*ms, 20*ms, 20*ms, 23*ms, 60*ms), 0, 0, []string{"| 1.15 (met) |"}},
		{"missed", rows(10*ms, 10*ms, 10*ms, 20*ms, 30*ms), 0, 0, []string{"| 2.00 (missed) |"}},
		{"floors", rows(10*ms, 10*ms, 10*ms, 20*ms, 30*ms), 15 * ms * cores, 3 * ms * cores,
			[]string{"plugins' CPU | 1.50 |", "plugins' + shim's CPU | 1.80 |"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &mnResult{sc: &mnScenarios[0], pods: 1, lat: tt.lat,
				cpu: []time.Duration{0, 0, 0, tt.cpu, 0}, self: []time.Duration{0, 0, 0, tt.self, 0}}
			md := r.markdown()
			for _, w := range tt.want {
				if !strings.Contains(md, w) {
					t.Errorf("report lacks %q:\n%s", w, md)
				}
			}
		})
	}
}

// TestMultinetBreakdown: the breakdown puts each chain's wall, the shim's time around the
// plugins and the plugins' CPU where they belong.
func TestMultinetBreakdown(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	run := func(ifName string, from, to, cpu time.Duration) mnExec {
		return mnExec{ifName: ifName, t0: t0.Add(from), t1: t0.Add(from + ms/2), t2: t0.Add(to), cpu: cpu, nvcsw: 10, nivcsw: 2}
	}
	alone := []mnSample{{start: t0, wall: 13 * ms, execs: []mnExec{run("eth0", 1*ms, 12*ms, 10*ms)}}}
	atOnce := []mnSample{{start: t0, wall: 22 * ms, execs: []mnExec{
		run("eth0", 1*ms, 15*ms, 10*ms), run("eth1", 2*ms, 18*ms, 10*ms), run("eth2", 3*ms, 20*ms, 10*ms)}}}
	r := &mnResult{sc: &mnScenarios[0], pods: 1, samples: [][]mnSample{alone, alone, alone, atOnce}}
	md := r.breakdownMarkdown()
	for _, w := range []string{
		"| set-up wall | 13.0 ms | 13.0 ms | 13.0 ms | 22.0 ms |",
		"| 11.0 ms | 11.0 ms | 11.0 ms | A 14.0 ms, B 16.0 ms, C 17.0 ms |",
		"first fork to last end) | 11.0 ms | 11.0 ms | 11.0 ms | 19.0 ms |",
		"goroutines) | 1.0 ms | 1.0 ms | 1.0 ms | 1.0 ms |",
		"status) | 1.0 ms | 1.0 ms | 1.0 ms | 2.0 ms |",
		"first fork after the first chain's | – | – | – | 2.0 ms |",
		"| plugins' CPU (wait4 rusage) | 10.0 ms | 10.0 ms | 10.0 ms | 30.0 ms |",
		"summed over the chains | 1.0 ms | 1.0 ms | 1.0 ms | 17.0 ms |",
		"context switches | 10 / 2 | 10 / 2 | 10 / 2 | 30 / 6 |",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("breakdown lacks %q:\n%s", w, md)
		}
	}
}
