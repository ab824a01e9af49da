package admission

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHost is a machine whose runnable tasks and CPU times a test sets.
type fakeHost struct {
	mu          sync.Mutex
	runnable    int
	idle, total uint64
}

func (h *fakeHost) host(cpus int) Host {
	return Host{
		CPUs: cpus,
		Runnable: func() (int, bool) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.runnable, true
		},
		CPUTimes: func() (uint64, uint64, bool) {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.idle, h.total, true
		},
	}
}

// tick advances the machine's CPU times by 100 ticks of which idle were idle.
func (h *fakeHost) tick(idle uint64) {
	h.mu.Lock()
	h.idle += idle
	h.total += 100
	h.mu.Unlock()
}

const ms = time.Millisecond

func TestAdaptiveBound(t *testing.T) {
	// chains of one key: CPU, wall, runnable tasks at the end.
	type chains struct {
		key      string
		cpu      time.Duration
		walls    []time.Duration
		runnable int
		unknown  bool
	}
	repeat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	spread := func(from, to time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = from + (to-from)*time.Duration(i)/time.Duration(n-1)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		floor      int
		chains     []chains
		interleave bool
		want       int
		reason     string
	}{
		{name: "nothing known", floor: 2, want: 2, reason: "no chain has finished"},
		{name: "chains that compute stay at the floor", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(32*ms, 40)}}, want: 2, reason: "held at the floor 2"},
		{name: "chains that wait half a second", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(530*ms, 40)}}, want: 52},
		{name: "chains that wait two seconds", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(2030*ms, 40)}}, want: 202},
		{name: "at most 128 per CPU", floor: 2,
			chains: []chains{{key: "a", cpu: 1 * ms, walls: repeat(10*time.Second, 5)}}, want: 256, reason: "held at the most 256"},
		// Three chains on a lock each holds for all its CPU wait 0 to 60 ms for it: only the
		// low end counts, and the bound stays at the three.
		{name: "waiting on each other (a lock) counts at its low end", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: spread(30*ms, 90*ms, 32)}}, want: 3},
		{name: "a busy machine's run queue is not waiting", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(60*ms, 32), runnable: 6}}, want: 2},
		// A storm's chain ends when others start: 28 runnable on 2 CPUs must not take 14 × its
		// CPU off a 500 ms sleep (which would give 2 × (1 + 1.5 × 80/30) = 10).
		{name: "a storm's run queue takes at most the chain's CPU again off its wait", floor: 2,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(530*ms, 32), runnable: 28}}, want: 49},
		{name: "a mix weighs each network by its share", floor: 2, interleave: true,
			chains: []chains{
				{key: "fast", cpu: 30 * ms, walls: repeat(30*ms, 32)},
				{key: "slow", cpu: 30 * ms, walls: repeat(530*ms, 32)},
			}, want: 27},
		{name: "chains of unknown CPU teach nothing", floor: 4,
			chains: []chains{{key: "a", cpu: 0, walls: repeat(2*time.Second, 10), unknown: true}}, want: 4, reason: "no finished chain had a known CPU time"},
		{name: "a wide floor is kept", floor: 8,
			chains: []chains{{key: "a", cpu: 30 * ms, walls: repeat(50*ms, 10)}}, want: 8},
		{name: "the recent chains of a key replace the old", floor: 2,
			chains: []chains{
				{key: "a", cpu: 30 * ms, walls: repeat(2*time.Second, 32)},
				{key: "a", cpu: 30 * ms, walls: repeat(30*ms, 32)},
			}, want: 2},
		{name: "the recent mix replaces the old", floor: 2,
			chains: []chains{
				{key: "slow", cpu: 30 * ms, walls: repeat(2*time.Second, 32)},
				{key: "fast", cpu: 30 * ms, walls: repeat(30*ms, 64)},
			}, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHost{}
			lane := NewLane("add", 1, nil)
			a := NewAdaptive(lane, tc.floor, 2, h.host(2))
			if got := lane.Stats().Limit; got != tc.floor {
				t.Fatalf("new bound: lane limit %d, want the floor %d", got, tc.floor)
			}
			if tc.interleave {
				// Chains of the keys in turn, as a node's pods on two networks come.
				for i := range tc.chains[0].walls {
					for _, c := range tc.chains {
						a.Observe(Chain{Key: c.key, Wall: c.walls[i], CPU: c.cpu, CPUKnown: true})
					}
				}
			} else {
				for _, c := range tc.chains {
					h.runnable = c.runnable
					for _, w := range c.walls {
						a.Observe(Chain{Key: c.key, Wall: w, CPU: c.cpu, CPUKnown: !c.unknown})
					}
				}
			}
			e := a.Estimate()
			if e.Bound != tc.want || lane.Stats().Limit != tc.want {
				t.Errorf("bound %d, lane limit %d, want %d (%s)", e.Bound, lane.Stats().Limit, tc.want, e.Reason)
			}
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", e.Reason, tc.reason)
			}
			if e.Floor != tc.floor || e.CPUs != 2 || e.Max != 256 {
				t.Errorf("estimate %+v: want floor %d, 2 CPUs, most 256", e, tc.floor)
			}
		})
	}
}

func TestAdaptiveProbe(t *testing.T) {
	for _, tc := range []struct {
		name           string
		queued         bool
		finished       bool
		finishedBefore bool   // before the probe was armed: the estimate knows the chains
		idle           uint64 // of 100 ticks on 2 CPUs
		want           int
	}{
		{name: "a standing queue with idle CPUs widens by the CPUs over those in use", queued: true, idle: 80, want: 10},
		{name: "at most eight times", queued: true, idle: 100, want: 16},
		{name: "no queue", queued: false, idle: 80, want: 2},
		{name: "a chain finished", queued: true, finished: true, idle: 80, want: 2},
		{name: "a chain finished a moment before", queued: true, finishedBefore: true, idle: 80, want: 2},
		{name: "busy CPUs", queued: true, idle: 20, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHost{}
			lane := NewLane("add", 0, nil)
			a := NewAdaptive(lane, 2, 2, h.host(2))
			r1, r2 := mustAcquire(t, lane), mustAcquire(t, lane)
			defer r1()
			defer r2()
			out := make(chan result, 1)
			if tc.queued {
				go acquireAsync(guardCtx(t), lane, 3, out)
				waitUntil(t, "a caller queues", func() bool { return lane.Stats().Queued == 1 })
			}
			if tc.finishedBefore {
				a.Observe(Chain{Key: "a", Wall: 2 * time.Second, CPU: 30 * ms})
			}
			a.Arm()
			h.tick(tc.idle)
			if tc.finished {
				a.Observe(Chain{Key: "a", Wall: 2 * time.Second, CPU: 30 * ms})
			}
			widened := a.Probe()
			if got := a.Estimate().Bound; got != tc.want || widened != (tc.want > 2) {
				t.Errorf("bound %d (widened %v), want %d (%s)", got, widened, tc.want, a.Estimate().Reason)
			}
			if tc.want > 2 {
				r := <-out
				if r.err != nil {
					t.Fatalf("queued caller after the bound widened: %v", r.err)
				}
				r.release()
				if !a.Estimate().Probing || !strings.Contains(a.Estimate().Reason, fmt.Sprintf("widened to %d", tc.want)) {
					t.Errorf("estimate %+v does not say the probe widened the bound", a.Estimate())
				}
			}
		})
	}
}

func TestLearnerKeepsFixedBound(t *testing.T) {
	h := &fakeHost{}
	lane := NewLane("add", 3, nil)
	a := NewLearner(lane, 2, h.host(2))
	for range 10 {
		a.Observe(Chain{Key: "a", Wall: 2 * time.Second, CPU: 30 * ms, CPUKnown: true})
	}
	a.Arm()
	h.tick(90)
	if a.Probe() {
		t.Error("a learner's probe widened the bound")
	}
	if got := lane.Stats().Limit; got != 3 {
		t.Errorf("lane limit %d, want the fixed 3", got)
	}
	if got, ok := a.Expected("a"); !ok || got != 2*time.Second {
		t.Errorf("Expected = %s, %v; want 2s, true", got, ok)
	}
	if e := a.Estimate(); e.Bound != 3 || e.Reason != "fixed at 3" {
		t.Errorf("estimate %+v, want bound 3, fixed", e)
	}
}

func TestParseHost(t *testing.T) {
	if n, ok := parseRunnable([]byte("0.52 0.58 0.59 3/467 12345\n")); !ok || n != 2 {
		t.Errorf("parseRunnable = %d, %v; want 2, true", n, ok)
	}
	for _, bad := range []string{"", "0.5 0.5 0.5", "0.5 0.5 0.5 x/4 1", "0.5 0.5 0.5 0/4 1"} {
		if _, ok := parseRunnable([]byte(bad)); ok {
			t.Errorf("parseRunnable(%q) ok", bad)
		}
	}
	idle, total, ok := parseCPUTimes([]byte("cpu  10 1 5 100 4 1 2 3 7 0\ncpu0 1 2 3 4\n"))
	if !ok || idle != 104 || total != 126 {
		t.Errorf("parseCPUTimes = %d, %d, %v; want 104, 126, true", idle, total, ok)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6", "cpu 1 2 x 4 5 6"} {
		if _, _, ok := parseCPUTimes([]byte(bad)); ok {
			t.Errorf("parseCPUTimes(%q) ok", bad)
		}
	}
	if h := ProcHost(); h.CPUs < 1 {
		t.Errorf("ProcHost().CPUs = %d", h.CPUs)
	}
}

// TestProbeByProcessTrees: with the chains' processes listed, a probe goes by their state, not
// by the machine's idle CPU: a chain asleep in its plugins widens the bound on a machine with
// no idle CPU, a chain that computes does not on an idle one.
func TestProbeByProcessTrees(t *testing.T) {
	sleeper := exec.Command("sh", "-c", "sleep 30; :")
	spinner := exec.Command("sh", "-c", "while :; do :; done")
	for _, c := range []*exec.Cmd{sleeper, spinner} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	waitUntil(t, "the sleeper's child sleeps", func() bool {
		asleep, looked, ok := ProcTreesAsleep([]int{sleeper.Process.Pid})
		return ok && looked == 1 && asleep == 1
	})
	if asleep, looked, ok := ProcTreesAsleep([]int{spinner.Process.Pid, 1 << 30}); !ok || looked != 1 || asleep != 0 {
		t.Fatalf("ProcTreesAsleep(spinner, no such pid) = %d, %d, %v; want 0 asleep of 1 looked at", asleep, looked, ok)
	}

	for _, tc := range []struct {
		name string
		pid  int
		idle uint64
		want int
	}{
		{name: "asleep on a busy machine", pid: sleeper.Process.Pid, idle: 0, want: 16},
		{name: "computing on an idle machine", pid: spinner.Process.Pid, idle: 100, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHost{}
			lane := NewLane("add", 0, nil)
			a := NewAdaptive(lane, 2, 2, h.host(2))
			a.SetChainProcs(func() []int { return []int{tc.pid} })
			r1, r2 := mustAcquire(t, lane), mustAcquire(t, lane)
			defer r1()
			defer r2()
			out := make(chan result, 1)
			go acquireAsync(guardCtx(t), lane, 3, out)
			waitUntil(t, "a caller queues", func() bool { return lane.Stats().Queued == 1 })
			a.Arm()
			h.tick(tc.idle)
			a.Probe()
			if got := a.Estimate().Bound; got != tc.want {
				t.Errorf("bound %d, want %d (%s)", got, tc.want, a.Estimate().Reason)
			}
			if tc.want > 2 {
				r := <-out
				r.release()
			} else {
				lane.SetLimit(3) // let the queued caller go
				r := <-out
				r.release()
			}
		})
	}
}

// TestExpected: a key's expected time is the 90th percentile of its recent chains, so that
// one chain that stalled does not make every later set-up with a shorter deadline refused.
func TestExpected(t *testing.T) {
	a := NewLearner(NewLane("add", 2, nil), 2, (&fakeHost{}).host(2))
	if _, ok := a.Expected("a"); ok {
		t.Fatal("Expected of a key never seen is known")
	}
	a.Observe(Chain{Key: "a", Wall: time.Minute, CPU: 30 * ms, CPUKnown: true})
	for range 10 {
		a.Observe(Chain{Key: "a", Wall: 100 * ms, CPU: 30 * ms, CPUKnown: true})
	}
	if got, ok := a.Expected("a"); !ok || got != 100*ms {
		t.Errorf("Expected after one stalled chain and 10 of 100ms = %s, %v; want 100ms", got, ok)
	}
	for range 5 {
		a.Observe(Chain{Key: "a", Wall: 2 * time.Second, CPU: 30 * ms, CPUKnown: true})
	}
	if got, _ := a.Expected("a"); got != 2*time.Second {
		t.Errorf("Expected after 5 chains of 2s = %s; want 2s", got)
	}
	// The network became fast: a few fast chains bring the estimate down, without waiting for
	// the slow ones to age out.
	for range 4 {
		a.Observe(Chain{Key: "a", Wall: 50 * ms, CPU: 30 * ms, CPUKnown: true})
	}
	if got, _ := a.Expected("a"); got != 50*ms {
		t.Errorf("Expected after 5 slow chains, then 4 of 50ms = %s; want 50ms", got)
	}
}
