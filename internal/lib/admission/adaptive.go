package admission

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Chain is one finished chain of plugins, as an [Adaptive] bound learns from it.
type Chain struct {
	// Key says which networks the chain ran; chains of one key are taken to be alike.
	Key string
	// Wall is how long the chain held its slot: from admission to release.
	Wall time.Duration
	// CPU is the CPU time (user and system) of the chain's plugin processes and of every
	// process they waited for (an IPAM plugin, iptables).
	CPU time.Duration
	// CPUKnown is false when the executor could not tell the CPU time; such a chain
	// teaches the bound nothing about CPU, but still gives its key an expected duration.
	CPUKnown bool
}

// Host reads what an [Adaptive] bound needs to know of the machine. Its functions return
// ok false when the value cannot be read; the bound then assumes the worst case for
// widening (no idle CPU, every CPU busy).
type Host struct {
	// Runnable returns how many tasks are runnable on the machine right now, the caller
	// excluded (the fourth field of /proc/loadavg, less one).
	Runnable func() (n int, ok bool)
	// CPUTimes returns the machine's cumulative idle and total CPU time, in any unit
	// (the first line of /proc/stat).
	CPUTimes func() (idle, total uint64, ok bool)
	// CPUs is how many CPUs the machine has (what Runnable and CPUTimes count over).
	CPUs int
}

// Estimate is an [Adaptive] bound at one moment, with what it was derived from.
type Estimate struct {
	// Bound is the ADD bound in force.
	Bound int
	// Floor is the bound's lower limit, kept while chains burn CPU; Max its upper limit.
	Floor, Max int
	// CPUs is how many CPUs the chains may use (the process's GOMAXPROCS).
	CPUs int
	// CPU is the CPU time a chain spends, averaged over the recent mix of networks; 0 before
	// the first chain with a known CPU time.
	CPU time.Duration
	// Wait is the time a chain spends waiting on something other than a CPU, counted as
	// the 10th percentile of each network's recent chains (so waiting that chains impose
	// on each other, on a lock or a busy CPU, is not counted), averaged over the mix.
	Wait time.Duration
	// Chains is how many recently finished chains, at most 64, the estimate looked at.
	Chains int
	// Probing is true when the bound was last raised by a probe: the queue stood still, no
	// chain finished, and the chains in flight waited.
	Probing bool
	// Reason says in a sentence why Bound is what it is.
	Reason string
}

// Sizes of an Adaptive bound's memory.
const (
	// keyWindow is how many recent chains of one key are kept.
	keyWindow = 32
	// mixWindow is how many recent chains, of all keys, weigh the keys in the mix.
	mixWindow = 64
	// waitQuantile is the quantile of a key's recent waits taken as what every chain waits.
	waitQuantile = 0.10
	// maxPerCPU bounds how wide the bound may grow, per CPU.
	maxPerCPU = 128
	// ProbeInterval is how often a standing queue is looked at while nothing finishes.
	ProbeInterval = 50 * time.Millisecond
	// waitHeadroom scales the wait in the bound: with exactly CPUs × (CPU+wait)/CPU chains
	// in flight the CPUs idle whenever a chain ends before the next is admitted, or a wait
	// runs long; half as many again as the waiting needs keeps them busy.
	waitHeadroom = 1.5
	// expectedSamples is how many of a key's latest chains its expected time looks at.
	expectedSamples = 5
	// expectedHorizon is how long a finished chain counts towards its key's expected time.
	expectedHorizon = 10 * time.Minute
	// maxKeys bounds how many keys are remembered; past it, keys outside the mix are forgotten.
	maxKeys = 4 * mixWindow
	// maxSlowdown caps the run-queue correction of a chain's wait. The runnable tasks are
	// sampled when a chain ends, which in a storm is when others start and burn CPU: a
	// sample of 28 runnable on 2 CPUs took 300 ms off the 500 ms a chain slept. The 10th
	// percentile of the waits keeps what the cap lets through from widening the bound.
	maxSlowdown = 2
	// probeQuiet is how long after a chain finished probes stay off: while chains finish the
	// estimate rules, and probes are for a queue of chains nothing is known of yet.
	probeQuiet = 2 * time.Second
	// probeMaxFactor bounds how much one probe multiplies the chains in flight.
	probeMaxFactor = 8
	// probeIdleCPUs is how much idle CPU, in CPUs, a probe must see to widen the bound.
	probeIdleCPUs = 0.5
)

// Adaptive sets a [Lane]'s bound from what the lane's chains spend, as thread pools are sized:
// cpus × (1 + 1.5 × Wait / CPU), where CPU is what a chain burns and Wait what it waits on
// something other than a CPU, with half as much headroom again on the wait so that the CPUs do
// not idle between one chain's end and the next one's start. Chains that burn CPU all through keep the bound at its floor
// (one per CPU by default); chains that mostly wait (an IPAM server, a delegate, address
// detection) widen it until their CPU fills the CPUs. The result is clamped to
// [floor, maxPerCPU × cpus].
//
// It learns from finished chains ([Adaptive.Observe]), per network key, and weighs the keys by
// their share of the last 64 chains, so a node whose pods use several networks gets a bound
// for its mix. A chain's wait is its wall time less its CPU time scaled by how many tasks
// were runnable per CPU when it ended (at most twice), so that time spent runnable but waiting
// for a CPU does not count as waiting.
//
// Until a chain of a new network finishes, nothing is known of it: when the queue stands
// still for a [ProbeInterval], nothing has finished for 2 s, and the chains in flight wait (their
// plugins' process trees asleep, see [Adaptive.SetChainProcs]; without them, at least half a
// CPU idle), [Adaptive.Probe] multiplies the bound by as much as the CPUs' use allows (2 to 8
// times); the next finished chains replace the probe's guess with an estimate.
//
// An Adaptive is safe for concurrent use. It starts no goroutines: the caller calls Probe
// while callers queue.
type Adaptive struct {
	lane *Lane
	// fixed is set for a learner (NewLearner), which leaves the lane's bound alone.
	fixed      bool
	floor, max int
	cpus       int
	host       Host

	mu   sync.Mutex
	keys map[string]*keyStats
	mix  [mixWindow]string // keys of the last chains, a ring
	nMix int               // chains recorded in mix, at most mixWindow
	iMix int               // next slot of mix
	// finished counts chains observed; probedAt is what it was at the last probe, and
	// lastFinish when the last one was observed.
	finished, probedAt uint64
	lastFinish         time.Time
	// chainProcs lists the processes of the chains in flight, when the caller can (SetChainProcs).
	chainProcs func() []int
	// idle and total are the CPU times read at the last probe.
	idle, total uint64
	haveCPU     bool
	est         Estimate
}

// keyStats are the recent chains of one key.
type keyStats struct {
	cpu, wait, wall [keyWindow]time.Duration
	known           [keyWindow]bool
	at              [keyWindow]time.Time // when each chain ended
	n, i            int
}

// NewAdaptive returns a bound for lane that never drops below floor (at least 1), for chains
// that may use cpus CPUs, reading the machine through host. It sets the lane's bound to floor.
func NewAdaptive(lane *Lane, floor, cpus int, host Host) *Adaptive {
	cpus = max(1, cpus)
	floor = max(1, floor)
	a := &Adaptive{lane: lane, floor: floor, max: max(floor, maxPerCPU*cpus), cpus: cpus, host: host, keys: map[string]*keyStats{}}
	a.mu.Lock()
	a.setLocked(floor, false, fmt.Sprintf("no chain has finished yet: the floor, %d", floor))
	a.mu.Unlock()
	return a
}

// NewLearner returns an Adaptive that learns from the lane's chains ([Adaptive.Expected],
// [Adaptive.Estimate]) but never changes the lane's bound, for a lane whose bound is fixed.
func NewLearner(lane *Lane, cpus int, host Host) *Adaptive {
	cpus = max(1, cpus)
	st := lane.Stats()
	a := &Adaptive{lane: lane, fixed: true, floor: st.Limit, max: st.Limit, cpus: cpus, host: host, keys: map[string]*keyStats{}}
	a.mu.Lock()
	a.setLocked(st.Limit, false, "")
	a.mu.Unlock()
	return a
}

// Observe learns from a finished chain and sets the lane's bound from what it knows now.
func (a *Adaptive) Observe(c Chain) {
	slowdown := 1.0
	if c.CPUKnown && a.host.Runnable != nil && a.host.CPUs > 0 {
		if n, ok := a.host.Runnable(); ok {
			slowdown = min(maxSlowdown, max(1, float64(n)/float64(a.host.CPUs)))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finished++
	a.lastFinish = time.Now()
	ks := a.keys[c.Key]
	if ks == nil {
		ks = &keyStats{}
		a.keys[c.Key] = ks
	}
	// The chain held a CPU for its CPU time, and, on a busy machine, waited its turn for
	// longer: that turn is not waiting on something else. The CPU the bound divides by is
	// the chain's own.
	ks.cpu[ks.i], ks.known[ks.i] = c.CPU, c.CPUKnown
	ks.wall[ks.i], ks.at[ks.i] = c.Wall, time.Now()
	ks.wait[ks.i] = max(0, c.Wall-time.Duration(float64(c.CPU)*slowdown))
	ks.i = (ks.i + 1) % keyWindow
	ks.n = min(ks.n+1, keyWindow)
	a.mix[a.iMix] = c.Key
	a.iMix = (a.iMix + 1) % mixWindow
	a.nMix = min(a.nMix+1, mixWindow)
	if len(a.keys) > maxKeys {
		inMix := map[string]bool{}
		for _, k := range a.mix[:a.nMix] {
			inMix[k] = true
		}
		for k := range a.keys {
			if !inMix[k] {
				delete(a.keys, k)
			}
		}
	}
	a.estimateLocked()
}

// estimateLocked sets the bound from the chains known.
func (a *Adaptive) estimateLocked() {
	weights := map[string]int{}
	for _, k := range a.mix[:a.nMix] {
		weights[k]++
	}
	var cpuSum, waitSum float64
	var w int
	a.est.Chains = a.nMix
	for k, n := range weights {
		ks := a.keys[k]
		cpu, wait, m := ks.cpuAndWait()
		if m == 0 {
			continue
		}
		cpuSum += float64(n) * float64(cpu)
		waitSum += float64(n) * float64(wait)
		w += n
	}
	if w == 0 || cpuSum <= 0 {
		a.est.CPU, a.est.Wait = 0, 0
		a.setLocked(a.floor, false, fmt.Sprintf("no finished chain had a known CPU time: the floor, %d", a.floor))
		return
	}
	cpu := time.Duration(cpuSum / float64(w))
	wait := time.Duration(waitSum / float64(w))
	want := float64(a.cpus) * (1 + waitHeadroom*waitSum/cpuSum)
	bound := int(math.Round(min(want, float64(a.max))))
	bound = max(a.floor, min(a.max, bound))
	a.est.CPU, a.est.Wait = cpu, wait
	var why string
	switch {
	case bound == a.floor:
		why = fmt.Sprintf("chains spend %s of CPU and wait %s: %d CPUs × (1 + 1.5 × wait/CPU) = %.1f, held at the floor %d",
			round(cpu), round(wait), a.cpus, want, a.floor)
	case bound == a.max:
		why = fmt.Sprintf("chains spend %s of CPU and wait %s: %d CPUs × (1 + 1.5 × wait/CPU) = %.1f, held at the most %d",
			round(cpu), round(wait), a.cpus, want, a.max)
	default:
		why = fmt.Sprintf("chains spend %s of CPU and wait %s: %d CPUs × (1 + 1.5 × wait/CPU) = %d",
			round(cpu), round(wait), a.cpus, bound)
	}
	a.setLocked(bound, false, why)
}

// cpuAndWait returns the mean CPU of the key's recent chains with a known CPU time, the
// waitQuantile of their waits, and how many there are.
func (ks *keyStats) cpuAndWait() (cpu, wait time.Duration, n int) {
	var waits [keyWindow]time.Duration
	var sum time.Duration
	for j := range ks.n {
		if !ks.known[j] {
			continue
		}
		sum += ks.cpu[j]
		waits[n] = ks.wait[j]
		n++
	}
	if n == 0 {
		return 0, 0, 0
	}
	w := waits[:n]
	slices.Sort(w)
	return sum / time.Duration(n), w[int(waitQuantile*float64(n-1))], n
}

// Expected returns how long a chain of key takes once admitted: the 90th percentile of the
// wall times of its last [expectedSamples] chains that ended in the last [expectedHorizon],
// or false if none did. A single slow chain does not count, and the estimate follows a network
// that became fast (or slow) within a few chains, rather than judging it by old chains until
// they age out.
func (a *Adaptive) Expected(key string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ks := a.keys[key]
	if ks == nil {
		return 0, false
	}
	var walls [expectedSamples]time.Duration
	n := 0
	since := time.Now().Add(-expectedHorizon)
	// Newest first: the ring's last write is at i-1.
	for j := 0; j < ks.n && n < expectedSamples; j++ {
		k := (ks.i - 1 - j + keyWindow) % keyWindow
		if ks.at[k].After(since) {
			walls[n] = ks.wall[k]
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	w := walls[:n]
	slices.Sort(w)
	return w[int(0.9*float64(n-1))], true
}

// SetChainProcs gives the bound a way to list the processes of the chains in flight (each
// chain's running plugin), so that a probe can tell chains that wait from chains that compute
// by the state of their process trees (see [ProcTreesAsleep]) rather than by the machine's
// idle CPU, which neighbours' work hides.
func (a *Adaptive) SetChainProcs(pids func() []int) {
	a.mu.Lock()
	a.chainProcs = pids
	a.mu.Unlock()
}

// Arm starts a look at a queue: it reads the machine's CPU times and notes the chains finished
// so far, for the first [Adaptive.Probe] to compare with. The caller calls it when callers
// start to queue.
func (a *Adaptive) Arm() {
	var idle, total uint64
	ok := false
	if a.host.CPUTimes != nil {
		idle, total, ok = a.host.CPUTimes()
	}
	a.mu.Lock()
	a.probedAt = a.finished
	a.idle, a.total, a.haveCPU = idle, total, ok
	a.mu.Unlock()
}

// Probe looks at the lane once: if callers queue and no chain has finished since the last
// probe, it asks whether the chains in flight wait: by the state of their plugins' process
// trees when it can list them (at least three in four asleep), else by the machine's CPUs
// (at least half a CPU idle since the last probe). If they wait, it widens the bound to the
// chains in flight times the CPUs over the CPUs in use (2 to 8 times, up to the most). The
// caller calls [Adaptive.Arm] when callers start to queue, then Probe every [ProbeInterval]
// while they queue. It reports whether it widened the bound.
func (a *Adaptive) Probe() bool {
	var idle, total uint64
	ok := false
	if a.host.CPUTimes != nil {
		idle, total, ok = a.host.CPUTimes()
	}
	st := a.lane.Stats()
	a.mu.Lock()
	procs := a.chainProcs
	a.mu.Unlock()
	asleep, looked, treesOK := 0, 0, false
	if procs != nil && st.Queued > 0 {
		asleep, looked, treesOK = ProcTreesAsleep(procs())
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	finished := a.finished != a.probedAt
	a.probedAt = a.finished
	idleCPUs, idleKnown := 0.0, false
	if ok && a.haveCPU && total > a.total && idle >= a.idle {
		idleCPUs, idleKnown = float64(idle-a.idle)/float64(total-a.total)*float64(a.host.CPUs), true
	}
	a.idle, a.total, a.haveCPU = idle, total, ok
	if a.fixed || st.Queued == 0 || finished || a.est.Bound >= a.max {
		return false
	}
	if !a.lastFinish.IsZero() && time.Since(a.lastFinish) < probeQuiet {
		// Chains are finishing: the estimate knows them, and a gap between two of them on
		// a busy machine is not a sign that the chains in flight wait.
		return false
	}
	var used float64 // CPUs the chains in flight use
	var why string
	switch {
	case treesOK && looked > 0:
		if 4*asleep < 3*looked {
			return false
		}
		used = float64(looked-asleep) / float64(looked) * float64(st.InFlight)
		why = fmt.Sprintf("the plugins of %d of %d chains in flight asleep", asleep, looked)
	case idleKnown:
		if idleCPUs < probeIdleCPUs {
			return false
		}
		used = float64(a.cpus) - min(idleCPUs, float64(a.cpus))
		why = fmt.Sprintf("%.1f CPUs idle", idleCPUs)
	default:
		return false
	}
	factor := min(probeMaxFactor, max(2, float64(a.cpus)/max(0.25, used)))
	bound := min(a.max, int(factor*float64(max(a.est.Bound, st.InFlight))))
	quiet := "no chain has finished yet"
	if !a.lastFinish.IsZero() {
		quiet = fmt.Sprintf("no chain finished for %s", round(time.Since(a.lastFinish)))
	}
	a.setLocked(bound, true, fmt.Sprintf("%d queued, %s and %s: the chains in flight wait; widened to %d",
		st.Queued, quiet, why, bound))
	return true
}

// Estimate returns the bound in force and why.
func (a *Adaptive) Estimate() Estimate {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.est
}

// setLocked sets the bound and the lane's; a learner keeps the lane's fixed bound.
func (a *Adaptive) setLocked(bound int, probing bool, why string) {
	if a.fixed {
		bound = a.floor
		why = fmt.Sprintf("fixed at %d", bound)
		if bound == 0 {
			why = "unbounded"
		}
	}
	a.est.Bound, a.est.Floor, a.est.Max, a.est.CPUs = bound, a.floor, a.max, a.cpus
	a.est.Probing, a.est.Reason = probing, why
	if a.fixed {
		return
	}
	a.lane.SetLimit(bound)
	a.lane.metrics.publishEstimate(a.est.CPU, a.est.Wait)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
