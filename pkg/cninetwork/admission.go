package cninetwork

import (
	"context"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/internal/lib/admission"
)

// AdmissionLimits bound how many plugin chains of each kind a Plugin runs at once. Each kind
// has its own lane with its own bound, so a storm of set-ups never delays a teardown. A chain
// is one network's plugins for one pod: a pod on three networks runs three chains, each in a
// slot of its own, so however many networks a pod asks for, it gets no more chains at once
// than the bound. A bound of 0 (or less) leaves that kind unbounded; the zero
// AdmissionLimits bounds nothing.
type AdmissionLimits struct {
	// Add bounds the ADD chains of SetUpPod.
	Add int
	// Del bounds the DEL chains of TearDownPod, of a failed set-up's rollback, and of GC's
	// deletion of stale sandboxes.
	Del int
	// Check bounds the CHECK chains of CheckPod.
	Check int
	// Status bounds the background CNI STATUS probe of the default network.
	Status int
	// GC bounds GC passes, each holding its slot for the whole pass (its deletions of stale
	// sandboxes take DEL slots besides).
	GC int
	// AdaptiveAdd lets the ADD bound follow what the set-up chains spend: Add is then its
	// floor, kept while the chains burn CPU, and the bound widens while they wait (on an IPAM
	// server, a delegate, address detection) with CPUs to spare. Without it Add is a fixed
	// bound. It has no effect when Add is 0 (unbounded).
	AdaptiveAdd bool
}

// AdmissionStats is the Plugin's admission at one moment: each lane's bound, why it is what
// it is, and its queue. cnishim's status command, its metrics and crictl info all show it.
type AdmissionStats struct {
	// Add, Del, Check, Status and GC are the lanes of the fields of AdmissionLimits of the
	// same names.
	Add, Del, Check, Status, GC LaneStats
}

// LaneStats is one admission lane at one moment: its bound and why, how many chains run, how
// many wait, and how long admitted ones waited in total.
type LaneStats struct {
	// Limit is the lane's bound; 0 means unbounded.
	Limit int
	// InFlight is how many chains hold a slot, admitted and not yet done.
	InFlight int
	// Queued is how many chains wait for a slot.
	Queued int
	// Admitted counts the chains admitted since the Plugin was built.
	Admitted uint64
	// TimedOut counts the chains whose context ended while they waited; they ran nothing.
	TimedOut uint64
	// TotalWait is the sum, over admitted chains, of the time each waited.
	// TotalWait / Admitted is the mean wait for admission.
	TotalWait time.Duration
	// Reason says in a sentence why Limit is what it is.
	Reason string

	// The fields below describe the ADD lane's bound when it follows the chains
	// (AdmissionLimits.AdaptiveAdd), and are zero otherwise: Limit is then
	// CPUs × (1 + 1.5 × ChainWait / ChainCPU), at least Floor and at most Max (see the
	// package doc).
	Adaptive bool
	// Floor and Max are the adaptive bound's limits (AdmissionLimits.Add, and 128 per CPU).
	Floor, Max int
	// CPUs is how many CPUs the chains may use (GOMAXPROCS).
	CPUs int
	// ChainCPU is what a chain's plugins spend on CPU, and ChainWait what they wait on other
	// than a CPU (an IPAM server, address detection), as learnt from the recent chains of each
	// network and weighed by how often each network was set up lately; both 0 until a chain
	// has finished.
	ChainCPU, ChainWait time.Duration
	// Chains is how many recently finished chains, at most 64, the figures looked at.
	Chains int
	// Probing is true when the bound was last raised because chains queued while nothing
	// finished and the plugins in flight were asleep.
	Probing bool
}

// DefaultAdmissionLimits returns the bounds a Plugin uses without WithAdmission, derived from
// the CPUs available to the process: setup is CPU-bound and peaks at about one chain per CPU,
// teardown mostly waits on the kernel and gets a wider bound.
func DefaultAdmissionLimits() AdmissionLimits { return AdmissionLimits(admission.DefaultLimits()) }

// WithAdmission sets the admission bounds (default DefaultAdmissionLimits()). The zero
// AdmissionLimits bounds nothing, as the kubelet, CRI-O and containerd do. Each chain of an
// operation waits for a slot before its plugins run (see the package doc); a chain whose wait
// ends runs nothing, and its error says it timed out waiting for admission. A set-up whose
// first chain ran and whose later chain could not be admitted fails and is rolled back whole.
func WithAdmission(l AdmissionLimits) Option {
	return func(o *options) { o.admission = &l }
}

// Admission returns a view of the Plugin's admission lanes. It locks nothing the lanes' callers
// wait on, and costs a few microseconds.
func (p *Plugin) Admission() AdmissionStats {
	lane := func(l *admission.Lane) LaneStats {
		st := l.Stats()
		ls := LaneStats{Limit: st.Limit, InFlight: st.InFlight, Queued: st.Queued,
			Admitted: st.Admitted, TimedOut: st.TimedOut, TotalWait: st.TotalWait}
		switch {
		case st.Limit <= 0:
			ls.Reason = "unbounded"
		default:
			ls.Reason = fmt.Sprintf("fixed at %d", st.Limit)
		}
		return ls
	}
	out := AdmissionStats{Add: lane(p.lanes.Add), Del: lane(p.lanes.Del), Check: lane(p.lanes.Check),
		Status: lane(p.lanes.Status), GC: lane(p.lanes.GC)}
	if p.adaptiveAdd {
		e := p.lanes.AddBound.Estimate()
		a := &out.Add
		a.Limit, a.Reason, a.Adaptive, a.Floor, a.Max, a.CPUs = e.Bound, e.Reason, true, e.Floor, e.Max, e.CPUs
		a.ChainCPU, a.ChainWait, a.Chains, a.Probing = e.CPU, e.Wait, e.Chains, e.Probing
	}
	return out
}

// lane names an admission lane.
type lane int

const (
	laneAdd lane = iota
	laneDel
	laneCheck
	laneStatus
	laneGC
)

// laneOf returns the admission lane of l.
func (p *Plugin) laneOf(l lane) *admission.Lane {
	switch l {
	case laneAdd:
		return p.lanes.Add
	case laneDel:
		return p.lanes.Del
	case laneCheck:
		return p.lanes.Check
	case laneStatus:
		return p.lanes.Status
	default:
		return p.lanes.GC
	}
}

// admit waits for a slot in lane l. On success the caller runs its plugins, then calls
// release. The error wraps admission.ErrQueueTimeout and ctx's error.
func (p *Plugin) admit(ctx context.Context, l lane) (release func(), err error) {
	return p.laneOf(l).Acquire(ctx)
}

// admitNow is admit for a caller whose ctx may end before it could possibly wait its turn:
// when a slot is free and nobody queues, it takes it whatever ctx says, so that a budget for
// waiting never refuses a caller who would not wait.
func (p *Plugin) admitNow(ctx context.Context, l lane) (release func(), err error) {
	if release, ok := p.laneOf(l).TryAcquire(); ok {
		return release, nil
	}
	return p.admit(ctx, l)
}

// expected returns how long the chains of plan take once admitted, as far as recent set-ups
// tell: the longest of its networks' expected times (see admission.Adaptive.Expected), as the
// chains run side by side; false when none of them is known.
func (p *Plugin) expected(plan []attachment) (need time.Duration, known bool) {
	for _, a := range plan {
		if d, ok := p.lanes.AddBound.Expected(a.network); ok {
			need, known = max(need, d), true
		}
	}
	return need, known
}

// queueContext returns the budget a set-up waits under, for its sandbox's lock, the GC gate
// and each chain's slot. With a caller's deadline, the waits end early enough to leave the
// chains as long as their networks' recent chains took (see expected; all of the deadline when
// none is known), so that no set-up starts that cannot finish; a wait that need not happen
// (the sandbox free, a slot free, nobody queued) takes what is free whatever the budget says
// (see admitNow). Without a caller's deadline the budget is the caller's context, and each
// wait is capped at the operation timeout (see waitContext).
func (p *Plugin) queueContext(ctx context.Context, su *setUp) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	need, known := p.expected(su.plan)
	if !known {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-need))
}

// learnAdd tells admission what an ADD chain of network, admitted at admitted, cost.
func (p *Plugin) learnAdd(network string, admitted time.Time, m *cpuMeter) {
	cpu, known := m.total()
	p.lanes.AddBound.Observe(admission.Chain{Key: network, Wall: time.Since(admitted), CPU: cpu, CPUKnown: known})
}

// probeAdd looks at a queue of set-ups every admission.ProbeInterval while it stands, until
// ctx ends, so that an adaptive ADD bound widens for chains that wait before any has finished.
func (p *Plugin) probeAdd(ctx context.Context) {
	lane := p.lanes.Add
	for {
		select {
		case <-ctx.Done():
			return
		case <-lane.Queuing():
		}
		p.lanes.AddBound.Arm()
		t := time.NewTicker(admission.ProbeInterval)
		for lane.Stats().Queued > 0 {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
				p.lanes.AddBound.Probe()
			}
		}
		t.Stop()
	}
}
