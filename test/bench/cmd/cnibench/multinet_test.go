//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

// TestMultinetVerdict: the report sets the pod on three networks against the slowest network
// alone, and says whether the target is met.
func TestMultinetVerdict(t *testing.T) {
	ms := time.Millisecond
	rows := func(a, b, c, all, seq time.Duration) [][]time.Duration {
		return [][]time.Duration{{a}, {b}, {c}, {all}, {seq}}
	}
	for _, tt := range []struct {
		name string
		lat  [][]time.Duration
		want string
	}{
		{"met", rows(10*ms, 20*ms, 15*ms, 22*ms, 45*ms), "| 1.10 (met) |"},
		{"at the target", rows(20*ms, 20*ms, 20*ms, 23*ms, 60*ms), "| 1.15 (met) |"},
		{"missed", rows(10*ms, 10*ms, 10*ms, 20*ms, 30*ms), "| 2.00 (missed) |"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			md := mnMarkdown(1, tt.lat, [5]time.Duration{})
			if !strings.Contains(md, tt.want) {
				t.Fatalf("report lacks %q:\n%s", tt.want, md)
			}
		})
	}
}
