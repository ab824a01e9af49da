package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/internal/admission"
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
	// GC bounds GC's plugin phase.
	GC int
	// AdaptiveAdd lets the ADD bound follow what the set-up chains spend: Add is then its
	// floor, kept while the chains burn CPU, and the bound widens while they wait (on an IPAM
	// server, a delegate, address detection) with CPUs to spare. Without it Add is a fixed
	// bound. It has no effect when Add is 0 (unbounded).
	AdaptiveAdd bool
}

// LaneStats is a point-in-time view of one admission lane: its bound, how many operations
// run, how many wait, and how long admitted ones waited in total.
type LaneStats struct {
	// Name is the lane's name: "add", "del", "check", "status" or "gc", for the fields of
	// AdmissionLimits of the same names.
	Name string
	// Limit is the lane's bound; 0 means unbounded.
	Limit int
	// InFlight is how many operations hold a slot, admitted and not yet done.
	InFlight int
	// Queued is how many operations wait for a slot.
	Queued int
	// Admitted counts the operations admitted since the Plugin was built.
	Admitted uint64
	// TimedOut counts the operations whose context ended while they waited; they ran
	// nothing.
	TimedOut uint64
	// TotalWait is the sum, over admitted operations, of the time each waited.
	// TotalWait / Admitted is the mean wait for admission.
	TotalWait time.Duration
}

// DefaultAdmissionLimits returns the bounds a Plugin uses without WithAdmission, derived from
// the CPUs available to the process: setup is CPU-bound and peaks at about one chain per CPU,
// teardown mostly waits on the kernel and gets a wider bound.
func DefaultAdmissionLimits() AdmissionLimits { return AdmissionLimits(admission.DefaultLimits()) }

// WithAdmission sets the admission bounds (default DefaultAdmissionLimits()). The zero
// AdmissionLimits bounds nothing, as the kubelet, CRI-O and containerd do. An operation waits
// for admission after its pod is checked and before any plugin runs; if its context ends
// while it waits, it runs nothing and returns an error saying it timed out waiting for
// admission.
func WithAdmission(l AdmissionLimits) Option {
	return func(o *options) { o.admission = &l }
}

// AdmissionStats returns a view of each admission lane, in the order add, del, check, status,
// gc.
func (p *Plugin) AdmissionStats() []LaneStats {
	stats := p.lanes.Stats()
	out := make([]LaneStats, len(stats))
	for i, s := range stats {
		out[i] = LaneStats(s)
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

// inSlot runs one plugin chain of network, a verb ("ADD", "DEL", "CHECK") of a pod, in a slot
// of lane l of its own, waited for under ctx: every chain counts against its lane's bound,
// however many a pod runs side by side. When ctx ends first, the chain does not run, and the
// error (see chainError) says it ended before any plugin ran.
func (p *Plugin) inSlot(ctx context.Context, l lane, network, verb string, run func() error) error {
	start := time.Now()
	release, err := p.admit(ctx, l)
	if err != nil {
		return chainError(ctx, start, network, verb, &execTrace{}, false, err)
	}
	defer release()
	return run()
}

// lockNow waits for pod's sandbox lock under ctx, but takes it whatever ctx says when nothing
// holds or waits for it (see admitNow). An error says what it waited for when ctx ended.
func (p *Plugin) lockNow(ctx context.Context, pod *Pod, start time.Time) (unlock func(), err error) {
	if unlock, ok := p.locks.TryLock(pod.SandboxID); ok {
		return unlock, nil
	}
	unlock, err = p.locks.Lock(ctx, pod.SandboxID)
	if err != nil {
		return nil, p.waitError(pod, start, err)
	}
	return unlock, nil
}

// AddBound is the ADD bound at one moment, and why it is what it is.
type AddBound struct {
	// Adaptive is true when the bound follows the chains (AdmissionLimits.AdaptiveAdd).
	Adaptive bool
	// Bound is the bound in force; 0 means unbounded.
	Bound int
	// Floor and Max are the adaptive bound's limits (AdmissionLimits.Add, and 128 per CPU).
	Floor, Max int
	// CPUs is how many CPUs the chains may use (GOMAXPROCS).
	CPUs int
	// CPU is what a set-up's plugins spend on CPU, and Wait what they wait on other than a
	// CPU (an IPAM server, address detection), as learnt from the recent
	// set-ups of each network and weighed by how often each network was set up lately; both
	// 0 until a set-up has finished.
	CPU, Wait time.Duration
	// Chains is how many recently finished set-ups, at most 64, the figures looked at.
	Chains int
	// Probing is true when the bound was last raised because set-ups queued while nothing
	// finished and the plugins in flight were asleep.
	Probing bool
	// Reason says in a sentence why Bound is what it is.
	Reason string
}

// AddBound returns the ADD bound in force and why. With AdmissionLimits.AdaptiveAdd the bound
// is CPUs × (1 + 1.5 × Wait / CPU), at least Add and at most 128 per CPU: chains that compute
// keep it near Add, chains that wait widen it until their CPU fills the CPUs (see the package
// doc).
func (p *Plugin) AddBound() AddBound {
	e := p.lanes.AddBound.Estimate()
	return AddBound{
		Adaptive: p.adaptiveAdd, Bound: e.Bound, Floor: e.Floor, Max: e.Max, CPUs: e.CPUs,
		CPU: e.CPU, Wait: e.Wait, Chains: e.Chains, Probing: e.Probing, Reason: e.Reason,
	}
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

// queueContext returns the context a set-up waits under, for its sandbox's lock, the GC gate
// and its first admission. With a caller's deadline, the wait ends early enough to leave the
// chains as long as their networks' recent chains took (see expected; all of the deadline when
// none is known), so that no set-up starts that cannot finish; a set-up that need not wait
// takes what is free whatever this says (see admitNow). Without a caller's deadline, it ends
// after the operation timeout, so that no set-up waits forever.
func (p *Plugin) queueContext(ctx context.Context, su *setUp) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, p.opts.operationTimeout)
	}
	need, known := p.expected(su.plan)
	if !known {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-need))
}

// queueError is the error of a set-up whose wait for its sandbox or for admission failed with
// err. When the caller's context is still live, the wait ended to leave the chain its time:
// the error says so, and wraps ErrTimeout, admission.ErrQueueTimeout and err.
func (p *Plugin) queueError(ctx context.Context, su *setUp, err error) error {
	dl, ok := ctx.Deadline()
	if ctx.Err() != nil || !ok || !errors.Is(err, context.DeadlineExceeded) {
		return p.waitError(su.pod, su.start, err)
	}
	need, _ := p.expected(su.plan)
	if !errors.Is(err, admission.ErrQueueTimeout) {
		// The wait for the sandbox's lock or the GC gate ended it.
		err = fmt.Errorf("%w: %w", admission.ErrQueueTimeout, err)
	}
	return fmt.Errorf("%s: %w: not started after waiting %s: %s left before the caller's deadline, and a set-up on %s takes up to %s: %w",
		su.pod, ErrTimeout, time.Since(su.start).Round(time.Millisecond), time.Until(dl).Round(time.Millisecond),
		su.networks(), need.Round(time.Millisecond), err)
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
