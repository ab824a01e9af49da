//go:build linux

package main

import (
	"slices"
	"testing"

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
