package cninetwork

import (
	"context"

	"github.com/cnishim/cnishim/internal/admission"
)

// AdmissionLimits bound how many plugin chains of each kind run at once: Add for SetUpPod,
// Del for TearDownPod, Check for CheckPod, Status for the background CNI STATUS probe and GC for
// GC. A bound of 0 (or less) leaves that kind unbounded. Each kind has its own lane, so a
// storm of setups never delays a teardown.
type AdmissionLimits = admission.Limits

// LaneStats is a point-in-time view of one admission lane: its bound, how many operations
// run, how many wait, and how long admitted ones waited in total.
type LaneStats = admission.Stats

// DefaultAdmissionLimits returns the bounds a Plugin uses without WithAdmission, derived from
// the CPUs available to the process: setup is CPU-bound and peaks at about one chain per CPU,
// teardown mostly waits on the kernel and gets a wider bound.
func DefaultAdmissionLimits() AdmissionLimits { return admission.DefaultLimits() }

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
func (p *Plugin) AdmissionStats() []LaneStats { return p.lanes.Stats() }

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
