//go:build linux

package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// admissionFlags are the bounds on plugin chains run at once.
type admissionFlags struct {
	setups    setupBound
	teardowns int
}

// setupBound is the value of --max-parallel-setups: "auto", or a fixed bound (0 = unbounded).
type setupBound struct {
	fixed bool
	n     int
}

func (b *setupBound) String() string {
	if b == nil || !b.fixed {
		return "auto"
	}
	return strconv.Itoa(b.n)
}

func (b *setupBound) Set(s string) error {
	if s == "auto" {
		*b = setupBound{}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want auto or a number of set-ups, 0 for unbounded")
	}
	*b = setupBound{fixed: true, n: n}
	return nil
}

func (a *admissionFlags) register(fs *flag.FlagSet) {
	def := cninetwork.DefaultAdmissionLimits()
	fs.Var(&a.setups, "max-parallel-setups", fmt.Sprintf("most pod network set-ups (ADD chains) run at once: auto, or a fixed number (0 = unbounded); "+
		"auto starts at the number of CPUs available (%d) and widens while the chains wait rather than compute (see cnishim status)", def.Add))
	fs.IntVar(&a.teardowns, "max-parallel-teardowns", def.Del, "most pod network teardowns (DEL chains) run at once; 0 = unbounded")
}

// limits returns the admission limits the flags ask for; CHECK, STATUS and GC keep their
// defaults.
func (a *admissionFlags) limits() cninetwork.AdmissionLimits {
	l := cninetwork.DefaultAdmissionLimits()
	if a.setups.fixed {
		l.Add, l.AdaptiveAdd = a.setups.n, false
	}
	l.Del = a.teardowns
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
		st := p.Admission()
		b := st.Add
		return map[string]any{"admission": admissionInfo{Limits: limitsInfo(l), Lanes: lanesInfo(st), AddBound: &addBoundInfo{
			Adaptive: b.Adaptive, Bound: b.Limit, Floor: b.Floor, Max: b.Max, CPUs: b.CPUs,
			CPUMS: ms(b.ChainCPU), WaitMS: ms(b.ChainWait), Chains: b.Chains, Probing: b.Probing, Reason: b.Reason,
		}}}
	}
}

// admissionInfo is the "admission" entry of the verbose CRI Status answer; cnishim status
// reads it back. It is a wire format of its own, not cninetwork.AdmissionStats marshalled:
// its field names are what scripts reading crictl info rely on, and its durations are
// milliseconds.
type admissionInfo struct {
	Limits map[string]int `json:"limits"`
	Lanes  []laneInfo     `json:"lanes,omitempty"`
	// AddBound is the ADD bound in force and why (cninetwork.LaneStats of the ADD lane).
	AddBound *addBoundInfo `json:"addBound,omitempty"`
}

// addBoundInfo is the ADD lane's bound and why, with durations in milliseconds.
type addBoundInfo struct {
	Adaptive bool    `json:"adaptive"`
	Bound    int     `json:"bound"`
	Floor    int     `json:"floor,omitempty"`
	Max      int     `json:"max,omitempty"`
	CPUs     int     `json:"cpus"`
	CPUMS    float64 `json:"chainCpuMs"`
	WaitMS   float64 `json:"chainWaitMs"`
	Chains   int     `json:"chains"`
	Probing  bool    `json:"probing,omitempty"`
	Reason   string  `json:"reason"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

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

// Lane names in cnishim's status output, for the fields of cninetwork.AdmissionLimits.
const (
	laneAdd    = "add"
	laneDel    = "del"
	laneCheck  = "check"
	laneStatus = "status"
	laneGC     = "gc"
)

func limitsInfo(l cninetwork.AdmissionLimits) map[string]int {
	return map[string]int{laneAdd: l.Add, laneDel: l.Del, laneCheck: l.Check, laneStatus: l.Status, laneGC: l.GC}
}

func lanesInfo(a cninetwork.AdmissionStats) []laneInfo {
	lanes := []struct {
		name string
		st   cninetwork.LaneStats
	}{{laneAdd, a.Add}, {laneDel, a.Del}, {laneCheck, a.Check}, {laneStatus, a.Status}, {laneGC, a.GC}}
	out := make([]laneInfo, 0, len(lanes))
	for _, l := range lanes {
		s := l.st
		li := laneInfo{Name: l.name, Limit: s.Limit, InFlight: s.InFlight, Queued: s.Queued, Admitted: s.Admitted, TimedOut: s.TimedOut}
		if s.Admitted > 0 {
			li.MeanWaitMS = ms(s.TotalWait) / float64(s.Admitted)
		}
		out = append(out, li)
	}
	return out
}
