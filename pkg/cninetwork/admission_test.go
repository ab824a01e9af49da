package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/admission"
)

// waitFor polls cond until it holds or the test's context ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("never: %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestAdmission(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 1, Del: 2}))
	ctx := t.Context()
	if _, err := p.SetUpPod(ctx, testPod("old")); err != nil {
		t.Fatal(err)
	}

	// One ADD hangs in its plugin; more setups queue behind it.
	release := make(chan struct{})
	started := make(chan string, 8)
	fe.set("ptp", "ADD", reply{hook: func(_ context.Context, c execCall) { started <- c.ContainerID }, block: release})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if _, err := p.SetUpPod(ctx, testPod(fmt.Sprintf("q%d", i))); err != nil {
				t.Errorf("SetUpPod(q%d): %v", i, err)
			}
		})
	}
	<-started
	waitFor(t, "two setups queued", func() bool { return p.Admission().Add.Queued == 2 })
	if st := p.Admission().Add; st.InFlight != 1 || st.Limit != 1 || st.Reason != "fixed at 1" {
		t.Fatalf("add lane = %+v", st)
	}

	// A teardown is not held up by the queued setups.
	if err := p.TearDownPod(ctx, testPod("old")); err != nil {
		t.Fatal(err)
	}

	// A setup whose context ends while queued runs nothing.
	qctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := p.SetUpPod(qctx, testPod("late"))
	if !errors.Is(err, admission.ErrQueueTimeout) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("SetUpPod while queued = %v; want ErrQueueTimeout and ErrTimeout", err)
	}
	for _, c := range fe.callsOf("") {
		if c.ContainerID == "late" {
			t.Fatalf("a setup that timed out waiting for admission ran %s %s", c.Command, c.Plugin)
		}
	}

	close(release)
	wg.Wait()
	fe.mu.Lock()
	maxAdds, maxAll := fe.maxRunningCmd["ADD"], fe.maxRunning
	fe.mu.Unlock()
	if maxAdds != 1 {
		t.Fatalf("%d ADD execs ran at once with an ADD bound of 1", maxAdds)
	}
	if maxAll != 2 {
		t.Fatalf("at most %d execs ran at once; want 2 (the teardown beside the hung setup)", maxAll)
	}
}

// TestAdmissionUnbounded: the zero limits bound nothing.
func TestAdmissionUnbounded(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{}))
	const n = 4
	fe.set("ptp", "ADD", reply{hook: allInFlight(t, n)})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := p.SetUpPod(t.Context(), testPod(fmt.Sprint("u", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	a := p.Admission()
	for name, st := range map[string]LaneStats{"add": a.Add, "del": a.Del, "check": a.Check, "status": a.Status, "gc": a.GC} {
		if st.Limit != 0 || st.Reason != "unbounded" {
			t.Fatalf("lane %s: limit %d (%s); want unbounded", name, st.Limit, st.Reason)
		}
	}
	if got := DefaultAdmissionLimits(); got.Add < 1 || got.Del < got.Add {
		t.Fatalf("DefaultAdmissionLimits() = %+v", got)
	}
}

// TestQueueTimeBudget: the operation timeout is the chain's, from admission on, so a set-up
// that queued longer than it still runs; and a set-up whose caller's deadline leaves less than
// its network's set-ups take is refused before any plugin runs, saying why, while its caller's
// context is still live.
func TestQueueTimeBudget(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	const opTimeout, setUp = time.Second, 600 * time.Millisecond
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 1, Del: 2}), WithOperationTimeout(opTimeout))
	ctx := t.Context()

	// Teach admission how long a set-up on the network takes.
	fe.set("ptp", "ADD", reply{sleep: setUp})
	if _, err := p.SetUpPod(ctx, testPod("learn")); err != nil {
		t.Fatal(err)
	}
	if b := p.Admission().Add; b.Adaptive || b.Limit != 1 || p.lanes.AddBound.Estimate().Chains != 1 {
		t.Fatalf("ADD lane after one set-up = %+v; want one chain learnt, fixed at 1", b)
	}

	// Two set-ups go first; the third queues for longer than the operation timeout,
	// with its caller's deadline far away, and still runs.
	longCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	errs := make(chan error, 3)
	for i, id := range []string{"first", "second", "patient"} {
		go func() { _, err := p.SetUpPod(longCtx, testPod(id)); errs <- err }()
		waitFor(t, id+" admitted or queued", func() bool { return p.Admission().Add.Queued == i })
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("a set-up queued behind %s of set-ups, with an operation timeout of %s: %v; want each chain its own budget",
				2*setUp, opTimeout, err)
		}
	}

	// With less time left to its caller than set-ups on the network take, a set-up that would
	// have to wait for a slot is refused before its caller's deadline, and runs nothing.
	block := make(chan struct{})
	fe.set("ptp", "ADD", reply{block: block})
	busy := make(chan error, 1)
	go func() { _, err := p.SetUpPod(longCtx, testPod("busy")); busy <- err }()
	waitFor(t, "the lane busy", func() bool { return p.Admission().Add.InFlight == 1 })
	shortCtx, cancel := context.WithTimeout(ctx, setUp/2)
	defer cancel()
	_, err := p.SetUpPod(shortCtx, testPod("late"))
	if shortCtx.Err() != nil {
		t.Errorf("refused at the caller's deadline, not before it: %v", err)
	}
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, admission.ErrQueueTimeout) || !strings.Contains(err.Error(), "not started") ||
		!strings.Contains(err.Error(), "before the caller's deadline") {
		t.Fatalf("SetUpPod with too little time left = %v; want ErrTimeout, ErrQueueTimeout, saying it was not started", err)
	}
	close(block)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	for _, c := range fe.callsOf("") {
		if c.ContainerID == "late" {
			t.Fatalf("a set-up refused for lack of time ran %s %s", c.Command, c.Plugin)
		}
	}
}

// TestQueueBudgetRecovers: the budget for waiting applies only where a set-up would wait. After
// a network's set-ups were slow, set-ups with less time than those took still run on an idle
// lane, and once the network is fast again the estimate follows within a few set-ups, without
// waiting for the slow ones to age out.
func TestQueueBudgetRecovers(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	const slow = 1500 * time.Millisecond
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 1, Del: 2}))
	ctx := t.Context()
	fe.set("ptp", "ADD", reply{sleep: slow})
	for i := range 3 {
		if _, err := p.SetUpPod(ctx, testPod(fmt.Sprint("slow", i))); err != nil {
			t.Fatal(err)
		}
	}
	if d, ok := p.lanes.AddBound.Expected("net-b"); !ok || d < slow {
		t.Fatalf("expected time after three slow set-ups = %s, %v; want at least %s", d, ok, slow)
	}

	// The network became fast. On an idle lane, nothing waits: set-ups with less time left
	// than the slow ones took run.
	fe.set("ptp", "ADD", reply{})
	for i := range 4 {
		short, cancel := context.WithTimeout(ctx, slow*4/5)
		_, err := p.SetUpPod(short, testPod(fmt.Sprint("fast", i)))
		cancel()
		if err != nil {
			st := p.Admission().Add
			t.Fatalf("set-up %d on an idle lane (%d in flight, %d queued) = %v; want it run", i, st.InFlight, st.Queued, err)
		}
	}
	// And the estimate followed them.
	if d, ok := p.lanes.AddBound.Expected("net-b"); !ok || d >= slow {
		t.Fatalf("expected time after four fast set-ups = %s, %v; want below %s", d, ok, slow)
	}
}

// TestQueueTimeSparesChainBudget: a teardown whose caller set no deadline waits for its slot
// within the operation timeout, and its chain then gets the whole operation timeout from its
// admission: the wait is not taken out of the chain's budget.
func TestQueueTimeSparesChainBudget(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	const opTimeout, del = 3 * time.Second, 2 * time.Second
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 2, Del: 1}), WithOperationTimeout(opTimeout))
	ctx := t.Context() // no deadline
	for _, id := range []string{"a", "b"} {
		if _, err := p.SetUpPod(ctx, testPod(id)); err != nil {
			t.Fatal(err)
		}
	}
	fe.set("ptp", "DEL", reply{sleep: del})
	first := make(chan error, 1)
	go func() { first <- p.TearDownPod(ctx, testPod("a")) }()
	waitFor(t, "the first teardown admitted", func() bool { return p.Admission().Del.InFlight == 1 })
	start := time.Now()
	if err := p.TearDownPod(ctx, testPod("b")); err != nil {
		t.Fatalf("teardown queued behind another, its chain %s, operation timeout %s: %v; want the chain its whole budget",
			del, opTimeout, err)
	}
	if took := time.Since(start); took < del {
		t.Fatalf("the second teardown took %s; want it to have waited for the first, then run its %s DEL", took, del)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// TestMultiNetworkBudgetOnIdleLane: the queue budget spares every chain of a pod that need not
// wait, not only its first: after a pod's extra network was slow, pods with less time left
// than it took still run on a lane with room for all their chains, and the estimate recovers.
func TestMultiNetworkBudgetOnIdleLane(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet))
	const slow = 1500 * time.Millisecond
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 2, Del: 2}))
	ctx := t.Context()
	pod := func(id string) *Pod {
		pd := testPod(id)
		pd.ExtraNetworks = []NetworkSelection{{Name: "net-c"}}
		return pd
	}
	fe.set("macvlan", "ADD", reply{sleep: slow})
	for i := range 3 {
		if _, err := p.SetUpPod(ctx, pod(fmt.Sprint("slow", i))); err != nil {
			t.Fatal(err)
		}
	}
	fe.set("macvlan", "ADD", reply{})
	for i := range 4 {
		short, cancel := context.WithTimeout(ctx, slow*4/5)
		_, err := p.SetUpPod(short, pod(fmt.Sprint("fast", i)))
		cancel()
		if err != nil {
			t.Fatalf("set-up %d of a pod on two networks, on a lane with room for both = %v; want it run", i, err)
		}
	}
	if d, ok := p.lanes.AddBound.Expected("net-c"); !ok || d >= slow {
		t.Fatalf("net-c's expected time after four fast chains = %s, %v; want below %s", d, ok, slow)
	}
}

// TestSequentialChainsEachGetAWait: CHECK runs a pod's chains one after another; with no
// caller deadline, each chain's wait for its slot is capped afresh, so chains that together
// take longer than the operation timeout all run.
func TestSequentialChainsEachGetAWait(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet), network(t, ipvlanNet))
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 2, Del: 2, Check: 1}), WithOperationTimeout(2*time.Second))
	pd := testPod("s1")
	pd.ExtraNetworks = []NetworkSelection{{Name: "net-c"}, {Name: "net-d"}}
	if _, err := p.SetUpPod(t.Context(), pd); err != nil {
		t.Fatal(err)
	}
	for _, plugin := range []string{"ptp", "macvlan", "tuning"} {
		fe.set(plugin, "CHECK", reply{sleep: 1200 * time.Millisecond})
	}
	if err := p.CheckPod(t.Context(), pd); err != nil {
		t.Fatalf("CHECK of three networks of 1.2 s each, operation timeout 2 s: %v; want each chain its own wait and budget", err)
	}
	if n := len(fe.callsOf("CHECK")); n < 3 {
		t.Fatalf("%d CHECK execs; want every network's", n)
	}
}
