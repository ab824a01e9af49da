//go:build linux

package main

import (
	"flag"

	"github.com/cnishim/cnishim/internal/admission"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// admissionFlags are the bounds on plugin chains run at once.
type admissionFlags struct {
	setups, teardowns int
}

func (a *admissionFlags) register(fs *flag.FlagSet) {
	def := cninetwork.DefaultAdmissionLimits()
	fs.IntVar(&a.setups, "max-parallel-setups", def.Add, "most pod network set-ups (ADD chains) run at once, 0 = unbounded; the default is the number of CPUs available")
	fs.IntVar(&a.teardowns, "max-parallel-teardowns", def.Del, "most pod network teardowns (DEL chains) run at once; 0 = unbounded")
}

// limits returns the admission limits the flags ask for; CHECK, STATUS and GC keep their
// defaults.
func (a *admissionFlags) limits() cninetwork.AdmissionLimits {
	l := cninetwork.DefaultAdmissionLimits()
	l.Add, l.Del = a.setups, a.teardowns
	return l
}

// pluginOptions returns the cninetwork options for the bounds.
func (a *admissionFlags) pluginOptions() []cninetwork.Option {
	return []cninetwork.Option{cninetwork.WithAdmission(a.limits())}
}

// statusInfo returns the verbose Status entries that show the bounds and the queues.
func (a *admissionFlags) statusInfo(p *cninetwork.Plugin) func() map[string]any {
	l := a.limits()
	return func() map[string]any {
		return map[string]any{"admission": admissionInfo{Limits: limitsInfo(l), Lanes: lanesInfo(p.AdmissionStats())}}
	}
}

// admissionInfo is the "admission" entry of the verbose CRI Status answer; cnishim status
// reads it back.
type admissionInfo struct {
	Limits map[string]int `json:"limits"`
	Lanes  []laneInfo     `json:"lanes,omitempty"`
}

// laneInfo is one admission lane's state.
type laneInfo struct {
	Name       string  `json:"name"`
	Limit      int     `json:"limit"`
	InFlight   int     `json:"inFlight"`
	Queued     int     `json:"queued"`
	Admitted   uint64  `json:"admitted"`
	TimedOut   uint64  `json:"timedOut"`
	MeanWaitMS float64 `json:"meanWaitMs"`
}

func limitsInfo(l cninetwork.AdmissionLimits) map[string]int {
	return map[string]int{
		admission.LaneAdd: l.Add, admission.LaneDel: l.Del, admission.LaneCheck: l.Check,
		admission.LaneStatus: l.Status, admission.LaneGC: l.GC,
	}
}

func lanesInfo(stats []cninetwork.LaneStats) []laneInfo {
	out := make([]laneInfo, 0, len(stats))
	for _, s := range stats {
		li := laneInfo{Name: s.Name, Limit: s.Limit, InFlight: s.InFlight, Queued: s.Queued, Admitted: s.Admitted, TimedOut: s.TimedOut}
		if s.Admitted > 0 {
			li.MeanWaitMS = float64(s.TotalWait.Microseconds()) / 1000 / float64(s.Admitted)
		}
		out = append(out, li)
	}
	return out
}
