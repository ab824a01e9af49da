//go:build linux

package main

import (
	"slices"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
)

func TestParseCells(t *testing.T) {
	for _, c := range []struct {
		spec    string
		want    []runner.Cell
		wantErr bool
	}{
		{spec: "100x1", want: []runner.Cell{{Pods: 100, Callers: 1}, {Pods: 100, Callers: 1, PortMap: true}}},
		{spec: "200x8+hp, 400x32-hp", want: []runner.Cell{{Pods: 200, Callers: 8, PortMap: true}, {Pods: 400, Callers: 32}}},
		{spec: "", want: nil},
		{spec: "200", wantErr: true},
		{spec: "0x1", wantErr: true},
		{spec: "10x0", wantErr: true},
		{spec: "axb", wantErr: true},
	} {
		got, err := parseCells(c.spec)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("parseCells(%q) = %v, %v; want %v, error %v", c.spec, got, err, c.want, c.wantErr)
		}
	}
}

// TestBuildPlan checks the plan covers what the report needs: every implementation on every
// scenario, unbounded cnishim where a storm or one caller is measured, the sweep, and the
// storms not among the scenarios.
func TestBuildPlan(t *testing.T) {
	mainCells, _ := parseCells("100x1-hp,200x8-hp")
	storms, _ := parseCells("200x8-hp,400x32-hp")
	sweep, _ := parseCells("400x32-hp")
	plan, oneCaller := buildPlan(mainCells, storms, sweep, 3, 3, 1, impls.Limits{Add: 2, Del: 8})
	names := func(it runner.Item) []string {
		var out []string
		for _, v := range it.Variants {
			out = append(out, v.Name)
		}
		return out
	}
	want := []struct {
		cell     runner.Cell
		variants []string
		rounds   int
	}{
		{runner.Cell{Pods: 100, Callers: 1}, []string{"cnishim", "go-cni", "floor", "cnishim-unbounded"}, 3},
		{runner.Cell{Pods: 200, Callers: 8}, []string{"cnishim", "go-cni", "floor"}, 3},
		{runner.Cell{Pods: 200, Callers: 8}, []string{"cnishim-unbounded"}, 1},
		{runner.Cell{Pods: 400, Callers: 32}, []string{"cnishim", "cnishim-unbounded", "go-cni"}, 1},
		{runner.Cell{Pods: 400, Callers: 32}, []string{"cnishim-add=1", "cnishim-add=2", "cnishim-add=3"}, 1},
	}
	if len(plan) != len(want) {
		t.Fatalf("plan has %d items, want %d: %+v", len(plan), len(want), plan)
	}
	for i, w := range want {
		if plan[i].Cell != w.cell || !slices.Equal(names(plan[i]), w.variants) || plan[i].Rounds != w.rounds {
			t.Errorf("item %d = %v %v x%d; want %v %v x%d", i, plan[i].Cell, names(plan[i]), plan[i].Rounds, w.cell, w.variants, w.rounds)
		}
	}
	if l := plan[4].Variants[2].Limits; l == nil || l.Add != 3 || l.Del != 8 {
		t.Errorf("sweep add=3 limits = %+v, want Add 3 and the default Del 8", l)
	}
	if l := plan[0].Variants[3].Limits; l == nil || *l != (impls.Limits{}) {
		t.Errorf("unbounded limits = %+v, want all zero", l)
	}
	if !slices.Equal(oneCaller, []runner.Cell{{Pods: 100, Callers: 1}}) {
		t.Errorf("oneCaller = %v", oneCaller)
	}
}

func TestParseSlowCells(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		spec, waits string
		mixed       bool
		want        []runner.Cell
		wantErr     bool
	}{
		{spec: "110x8,400x32", waits: "500ms,2s", want: []runner.Cell{
			{Pods: 110, Callers: 8, IPAMWait: 500 * ms}, {Pods: 400, Callers: 32, IPAMWait: 500 * ms},
			{Pods: 110, Callers: 8, IPAMWait: 2000 * ms}, {Pods: 400, Callers: 32, IPAMWait: 2000 * ms},
		}},
		{spec: "10x4+hp", waits: "100ms", mixed: true, want: []runner.Cell{{Pods: 10, Callers: 4, PortMap: true, IPAMWait: 100 * ms, Mixed: true}}},
		{spec: "", waits: "2s", want: nil},
		{spec: "10x4", waits: "soon", wantErr: true},
		{spec: "10x4", waits: "0s", wantErr: true},
		{spec: "10", waits: "1s", wantErr: true},
	} {
		got, err := parseSlowCells(c.spec, c.waits, c.mixed)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("parseSlowCells(%q, %q) = %v, %v; want %v, error %v", c.spec, c.waits, got, err, c.want, c.wantErr)
		}
	}
	if got, err := parseBounds("2, 64,0"); err != nil || !slices.Equal(got, []int{2, 64, 0}) {
		t.Errorf("parseBounds = %v, %v", got, err)
	}
	if _, err := parseBounds("-1"); err == nil {
		t.Error("parseBounds accepted -1")
	}
}

// TestBuildSlowPlan: each slow storm has the four variants side by side, the fixed bounds
// are fixed (not adaptive) with the other lanes at their defaults, and the mixed storm has
// the default and each fixed bound, without go-cni.
func TestBuildSlowPlan(t *testing.T) {
	defaults := impls.Limits{Add: 2, Del: 8, AdaptiveAdd: true}
	slow := []runner.Cell{{Pods: 110, Callers: 8, IPAMWait: time.Second}}
	mixed := []runner.Cell{{Pods: 400, Callers: 32, IPAMWait: time.Second, Mixed: true}}
	plan := buildSlowPlan(slow, mixed, []int{2, 16, 0}, 1, defaults)
	if len(plan) != 2 {
		t.Fatalf("plan has %d items, want 2: %+v", len(plan), plan)
	}
	want := [][]struct {
		name   string
		limits *impls.Limits
	}{
		{
			{"cnishim", nil},
			{"cnishim-add=unbounded", &impls.Limits{Add: 0, Del: 8}},
			{"cnishim-add=cpu", &impls.Limits{Add: 2, Del: 8}},
			{"go-cni", nil},
		},
		{
			{"cnishim", nil},
			{"cnishim-add=2", &impls.Limits{Add: 2, Del: 8}},
			{"cnishim-add=16", &impls.Limits{Add: 16, Del: 8}},
			{"cnishim-add=unbounded", &impls.Limits{Add: 0, Del: 8}},
		},
	}
	for i, it := range plan {
		if len(it.Variants) != len(want[i]) || it.Rounds != 1 {
			t.Fatalf("item %d: %+v", i, it)
		}
		for j, v := range it.Variants {
			w := want[i][j]
			if v.Name != w.name || (v.Limits == nil) != (w.limits == nil) || v.Limits != nil && *v.Limits != *w.limits {
				t.Errorf("item %d variant %d = %s %+v; want %s %+v", i, j, v.Name, v.Limits, w.name, w.limits)
			}
		}
	}
}
