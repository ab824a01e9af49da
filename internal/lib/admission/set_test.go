package admission

import (
	"runtime"
	"testing"
)

func TestLimitsForCPUs(t *testing.T) {
	for _, tc := range []struct {
		cpus int
		want Limits
	}{
		{cpus: -1, want: Limits{Add: 1, Del: 8, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{cpus: 0, want: Limits{Add: 1, Del: 8, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{cpus: 1, want: Limits{Add: 1, Del: 8, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{cpus: 2, want: Limits{Add: 2, Del: 8, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{cpus: 3, want: Limits{Add: 3, Del: 12, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{cpus: 64, want: Limits{Add: 64, Del: 256, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
	} {
		if got := limitsForCPUs(tc.cpus); got != tc.want {
			t.Errorf("limitsForCPUs(%d) = %+v, want %+v", tc.cpus, got, tc.want)
		}
	}
}

func TestDefaultLimitsFollowGOMAXPROCS(t *testing.T) {
	got := DefaultLimits()
	if want := limitsForCPUs(runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v for GOMAXPROCS %d", got, want, runtime.GOMAXPROCS(0))
	}
	if got.Add < 1 || got.Del <= got.Add {
		t.Errorf("DefaultLimits() = %+v: Add must be bounded and Del wider", got)
	}
}

func TestNewSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
	}{
		{name: "bounded", limits: Limits{Add: 2, Del: 8, Check: 2, Status: 1, GC: 1, AdaptiveAdd: true}},
		{name: "zero value is unbounded", limits: Limits{}},
		{name: "negative is unbounded", limits: Limits{Add: -1, Del: 3, Check: -2, Status: 0, GC: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSet(tc.limits, nil)
			norm := func(n int) int { return max(0, n) }
			want := []Stats{
				{Name: LaneAdd, Limit: norm(tc.limits.Add)},
				{Name: LaneDel, Limit: norm(tc.limits.Del)},
				{Name: LaneCheck, Limit: norm(tc.limits.Check)},
				{Name: LaneStatus, Limit: norm(tc.limits.Status)},
				{Name: LaneGC, Limit: norm(tc.limits.GC)},
			}
			got := s.Stats()
			if len(got) != len(want) {
				t.Fatalf("Stats() has %d lanes, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("lane %d: %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestSetTeardownWhileSetupsQueue: with the Add lane full and callers queued
// on it, DEL, CHECK, STATUS and GC are still admitted at once.
func TestSetTeardownWhileSetupsQueue(t *testing.T) {
	s := NewSet(Limits{Add: 1, Del: 2, Check: 1, Status: 1, GC: 1}, nil)
	holder := mustAcquire(t, s.Add)
	out := make(chan result, 5)
	for id := range 5 {
		enqueue(t, t.Context(), s.Add, id, out)
	}
	var held []func()
	for _, l := range []*Lane{s.Del, s.Del, s.Check, s.Status, s.GC} {
		held = append(held, mustAcquire(t, l))
	}
	checkStats(t, s.Add, 1, 5)
	checkStats(t, s.Del, 2, 0)
	for _, release := range held {
		release()
	}
	checkStats(t, s.Add, 1, 5) // other lanes' releases admit nobody here
	holder()
	for range 5 {
		(<-out).release()
	}
	for _, st := range s.Stats() {
		if st.InFlight != 0 || st.Queued != 0 {
			t.Errorf("lane %q: %d in flight, %d queued at the end", st.Name, st.InFlight, st.Queued)
		}
	}
}
