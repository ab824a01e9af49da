package admission

import "runtime"

// Lane names used by [NewSet]; they are the values of the [LaneLabel] metric
// label and of [Stats].Name.
const (
	LaneAdd    = "add"
	LaneDel    = "del"
	LaneCheck  = "check"
	LaneStatus = "status"
	LaneGC     = "gc"
)

// Limits are the bounds of a [Set]'s lanes. A value <= 0 makes that lane
// unbounded, so the zero Limits bounds nothing.
type Limits struct {
	Add, Del, Check, Status, GC int
	// AdaptiveAdd makes Add the floor of an ADD bound that follows what the chains spend
	// instead of a fixed bound. It has no effect when Add is unbounded.
	AdaptiveAdd bool
}

// DefaultLimits returns bounds derived from the CPUs available to the process,
// runtime.GOMAXPROCS(0), read at each call. That honours the CPU affinity mask
// and, when the main module declares go 1.25 or later, the cgroup CPU quota
// (and follows changes to it); an operator's GOMAXPROCS setting is taken as
// their statement of how many CPUs this process may use. Plugin processes
// inherit the process's affinity and cgroup, so they share those CPUs.
//
// Setting up a pod network runs CPU-bound plugin processes (and their iptables
// calls), so throughput peaks at about one ADD chain per CPU and falls beyond:
// Add is the CPU count. Teardown mostly waits on the kernel and gains from more
// width, and must never be starved by a set-up storm: Del is four per CPU, at
// least 8. CHECK, STATUS and GC are rare, and STATUS and GC need no
// parallelism: 2, 1 and 1.
func DefaultLimits() Limits {
	return limitsForCPUs(runtime.GOMAXPROCS(0))
}

func limitsForCPUs(cpus int) Limits {
	cpus = max(1, cpus)
	return Limits{
		Add:         cpus,
		AdaptiveAdd: true,
		Del:         max(8, 4*cpus),
		Check:       2,
		Status:      1,
		GC:          1,
	}
}

// Set groups the lanes of one network plugin, one per kind of CNI operation.
// The lanes are independent: a full, queued Add lane never delays Del.
type Set struct {
	Add, Del, Check, Status, GC *Lane
	// AddBound learns what Add's chains cost; it sets Add's bound when the limits ask for an
	// adaptive one, and is a learner (NewLearner) otherwise.
	AddBound *Adaptive
}

// NewSet returns a Set with the given bounds whose lanes are named
// [LaneAdd], [LaneDel], [LaneCheck], [LaneStatus] and [LaneGC] and report to m
// (which may be nil).
//
// When l.AdaptiveAdd is set and l.Add bounds, Add's bound is an [Adaptive] one with l.Add as
// its floor, for the CPUs available to the process (GOMAXPROCS), reading the machine through
// [ProcHost].
func NewSet(l Limits, m *Metrics) *Set {
	s := &Set{
		Add:    NewLane(LaneAdd, l.Add, m),
		Del:    NewLane(LaneDel, l.Del, m),
		Check:  NewLane(LaneCheck, l.Check, m),
		Status: NewLane(LaneStatus, l.Status, m),
		GC:     NewLane(LaneGC, l.GC, m),
	}
	if l.AdaptiveAdd && l.Add > 0 {
		s.AddBound = NewAdaptive(s.Add, l.Add, runtime.GOMAXPROCS(0), ProcHost())
	} else {
		s.AddBound = NewLearner(s.Add, runtime.GOMAXPROCS(0), ProcHost())
	}
	return s
}

// Stats returns a point-in-time view of each lane, in the order Add, Del,
// Check, Status, GC. Each lane is read under its own lock, one after another.
func (s *Set) Stats() []Stats {
	return []Stats{s.Add.Stats(), s.Del.Stats(), s.Check.Stats(), s.Status.Stats(), s.GC.Stats()}
}
