//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestNodeMarkdown(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x*float64(time.Millisecond)))
		}
		return ds
	}
	full := nodeResult{
		Sandboxes: 1000, Serving: time.Second, NetworkReady: 2 * time.Second, ReadyAfter: 1000,
		List: ms(1, 2, 3), Status: ms(0.1, 0.2), StatusVerbose: ms(0.3), ListCPU: 700 * time.Microsecond,
		RSSBefore: 20 << 10, PeakBefore: 21 << 10, RSSAfter: 19 << 10, PeakAfter: 19 << 10,
	}
	for _, c := range []struct {
		name string
		edit func(*nodeResult)
		want []string // lines that must appear
	}{
		{"all met", func(*nodeResult) {}, []string{
			"| restart: SIGKILL to serving (`Version` answers) | – | – | 1.00 s | ≤ 5.00 s | MET |",
			"| `ListPodSandbox`, 1000 sandboxes | 2.00 ms | 700 µs | 3.00 ms (p99) | ≤ 5.00 ms | MET |",
			"| `PodSandboxStatus` | 100 µs | – | 200 µs (p99) | ≤ 1.00 ms | MET |",
			"| RSS (VmRSS) before the restart | – | – | 20.0 MiB | ≤ 40 MiB | MET |",
			"After the restart 1000 of 1000 sandboxes are listed READY (the run fails otherwise).",
		}},
		{"misses", func(r *nodeResult) {
			r.NetworkReady = 6 * time.Second
			r.StatusVerbose = ms(2)
			r.PeakAfter = 41 << 10
		}, []string{
			"| restart: SIGKILL to `Status` NetworkReady | – | – | 6.00 s | ≤ 5.00 s | **MISS** |",
			"| `PodSandboxStatus`, verbose | 2.00 ms | – | 2.00 ms (p99) | ≤ 1.00 ms | **MISS** |",
			"| peak RSS (VmHWM) after the restart | – | – | 41.0 MiB | ≤ 40 MiB | **MISS** |",
		}},
		{"failed before the restart", func(r *nodeResult) {
			r.Serving, r.NetworkReady, r.StatusVerbose, r.RSSAfter = 0, 0, nil, 0
		}, []string{
			"| restart | – | – | – | ≤ 5.00 s | not measured |",
			"| `PodSandboxStatus`, verbose | – | – | – | ≤ 1.00 ms | not measured |",
			"| RSS (VmRSS) after the restart | – | – | – | ≤ 40 MiB | not measured |",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := full
			c.edit(&r)
			md := nodeMarkdown(&r, 200, 1000)
			for _, w := range c.want {
				if !strings.Contains(md, w+"\n") {
					t.Errorf("report lacks %q:\n%s", w, md)
				}
			}
		})
	}
}
