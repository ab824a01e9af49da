package cninetwork

import (
	"context"
	"time"

	"github.com/cnishim/cnishim/internal/admission"
)

// AdmissionLimits bound how many plugin chains of each kind a Plugin runs at once. Each kind
// has its own lane with its own bound, so a storm of set-ups never delays a teardown. A bound
// of 0 (or less) leaves that kind unbounded; the zero AdmissionLimits bounds nothing.
type AdmissionLimits struct {
	// Add bounds the ADD chains of SetUpPod (a set-up's rollback runs within the slot its
	// set-up holds).
	Add int
	// Del bounds the DEL chains of TearDownPod.
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

// admit waits for a slot in lane l. On success the caller runs its plugins, then calls
// release. The error wraps admission.ErrQueueTimeout and ctx's error.
func (p *Plugin) admit(ctx context.Context, l lane) (release func(), err error) {
	var ln *admission.Lane
	switch l {
	case laneAdd:
		ln = p.lanes.Add
	case laneDel:
		ln = p.lanes.Del
	case laneCheck:
		ln = p.lanes.Check
	case laneStatus:
		ln = p.lanes.Status
	default:
		ln = p.lanes.GC
	}
	return ln.Acquire(ctx)
}

// lockAndAdmit waits for pod's sandbox lock, then for a slot in lane l, and returns the
// function that gives both back. An error says what it waited for when ctx ended (see
// waitError).
func (p *Plugin) lockAndAdmit(ctx context.Context, pod *Pod, l lane, start time.Time) (release func(), err error) {
	unlock, err := p.locks.Lock(ctx, pod.SandboxID)
	if err != nil {
		return nil, p.waitError(pod, start, err)
	}
	leave, err := p.admit(ctx, l)
	if err != nil {
		unlock()
		return nil, p.waitError(pod, start, err)
	}
	return func() { leave(); unlock() }, nil
}
