//go:build linux

package soak

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/framework"
)

// GC kill test sizes. They follow the crash test's knobs: three GC rounds for every ten crash
// rounds (3 under make test, one of each kind; 15 under make soak), and an eighth of a crash
// round's pods (25 of 200) set up in each, plus a quarter of that again twice over in
// server-side rounds.
const (
	gcRoundsPerCrashRound = 0.3
	gcPodsPerCrashPod     = 1.0 / 8
	minGCRounds           = 3
	minGCPods             = 8
	// gcPluginSleep is how long the network's cnitest plugin takes over a CNI GC: long
	// enough for a kill to land while it runs, short enough to cost little per pass.
	gcPluginSleep = time.Second
	// maxGCKillDelay bounds a kill amid the plugin GC: it comes this long at most after the
	// GC is seen in flight, well before gcPluginSleep is over, even on a loaded machine.
	maxGCKillDelay = 400 * time.Millisecond
	// maxCollectedShare bounds a kill amid the collection of stale sandboxes: it comes once
	// the pass has collected a drawn share of them below this, so that a quarter are left
	// to collect, even if the kill comes late on a loaded machine.
	maxCollectedShare = 0.75
)

// gcKind is which GC pass a round kills.
type gcKind int

const (
	// gcStartUp kills the server during the GC pass it runs at start, before it listens:
	// once amid the collection of stale sandboxes, once amid the plugins' GC.
	gcStartUp gcKind = iota
	// gcLocal kills `cnishim gc --sandbox-ids`, run with no server, the same two ways.
	gcLocal
	// gcServer kills a `cnishim gc` amid the pass it asked of the server, with set-ups held
	// back by that pass; then it kills the server amid a second such pass.
	gcServer
)

func (k gcKind) String() string {
	return [...]string{"start-up GC", "cnishim gc --sandbox-ids", "cnishim gc on the server"}[k]
}

// gcPlan is how one GC round kills.
type gcPlan struct {
	kind  gcKind
	group bool // kill the process group (the plugins too), not the process alone
	// share is when a start-up or local round's first kill comes: once the pass has
	// collected this share of the stale sandboxes (0: at its first DEL).
	share float64
	// delays are how long after a plugin GC is seen in flight each kill amid it comes.
	delays [2]time.Duration
}

// gcPlans draws the rounds' kill points: round r is of kind r mod 3 and kills the process
// alone in even rounds, its process group in odd ones, so that six rounds meet every pair;
// among the rounds of one kind, the j-th draws its share of stale sandboxes collected from
// the j-th of as many equal slices of [0, maxCollectedShare), in a random order.
func gcPlans(rng *rand.Rand, rounds int) []gcPlan {
	plans := make([]gcPlan, rounds)
	byKind := make([][]int, 3)
	for r := range plans {
		kind := gcKind(r % 3)
		plans[r] = gcPlan{kind: kind, group: r%2 == 1}
		for i := range plans[r].delays {
			plans[r].delays[i] = time.Duration(rng.Int64N(int64(maxGCKillDelay)))
		}
		byKind[kind] = append(byKind[kind], r)
	}
	for _, rs := range byKind {
		for j, k := range rng.Perm(len(rs)) {
			plans[rs[j]].share = (float64(k) + rng.Float64()) / float64(len(rs)) * maxCollectedShare
		}
	}
	return plans
}

// gcKill is what one kill amid a GC pass found.
type gcKill struct {
	what     string         // the process killed
	phase    string         // "stale sandboxes" or "plugin GC": where in the pass it was aimed
	after    time.Duration  // from the process's start to the kill
	inFlight map[string]int // plugin processes by CNI command just before the kill
	orphans  int            // plugin processes still running right after it
	// collected and stale count the stale sandboxes whose records the pass had removed by
	// the kill, of those left to it when it started.
	collected, stale int
	// missed says, when not empty, why the kill did not cut the pass off; the round fails.
	missed string
}

func (k gcKill) String() string {
	s := fmt.Sprintf("%s killed amid its %s %v after its start (plugins in flight %v, orphans %d",
		k.what, k.phase, k.after.Round(time.Millisecond), k.inFlight, k.orphans)
	if k.stale > 0 {
		s += fmt.Sprintf(", %d of %d stale sandboxes collected", k.collected, k.stale)
	}
	if k.missed != "" {
		s += ", MISSED: " + k.missed
	}
	return s + ")"
}

// gcStats is what one GC round counted.
type gcStats struct {
	round int
	plan  gcPlan
	pods  int // set up before the kills, all ready
	stale int // of which the round made stale (forgot their sandbox records) for GC to collect
	kills []gcKill
	// held counts the set-ups sent during a server-side pass and not answered at its kill:
	// held back by the pass. heldReady counts those of them answered ready (all, when the
	// client was killed; none, when the server was).
	held, heldReady int

	listed, ready, intact int // after the last restart
	emptyReservations     int // see roundStats
	leaks                 int
	took                  time.Duration
}

func (s gcStats) String() string {
	mode := "process alone"
	if s.plan.group {
		mode = "process group"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GC round %d (%s, %s): %d pods set up, %d made stale", s.round, s.plan.kind, mode, s.pods, s.stale)
	for i, k := range s.kills {
		fmt.Fprintf(&b, "; kill %d: %s", i+1, k)
	}
	if s.plan.kind == gcServer {
		fmt.Fprintf(&b, "; set-ups held by the passes %d, of which ready after %d", s.held, s.heldReady)
	}
	fmt.Fprintf(&b, "; found after restart %d (%d ready: %d intact), leaks %d, empty host-local reservations %d; round %v",
		s.listed, s.ready, s.intact, s.leaks, s.emptyReservations, s.took.Round(time.Millisecond))
	return b.String()
}

// The runtime is killed with SIGKILL amid a CNI GC pass, in rounds of three kinds, and nothing
// is lost: during the pass it runs at start, before it listens; an operator's `cnishim gc
// --sandbox-ids`, run with no server; and a `cnishim gc` asking the server for a pass, with
// set-ups held back by it (the client killed, then the server). The network has a cnitest
// plugin whose GC takes a second, so that kills land amid the plugins' GC, and start-up and
// local rounds first make three in four of their ready sandboxes stale (their sandbox
// records removed while no server runs, as if they were gone), so that kills land amid their
// collection too. Each kill is checked to have cut its pass off; after the last, the passes
// run again to the end, every sandbox still known is ready and intact, the stale ones hold
// nothing, and once everything is removed nothing is left behind.
func TestCrashGC(t *testing.T) {
	rounds := max(minGCRounds, int(gcRoundsPerCrashRound*float64(framework.EnvInt(t, "CNISHIM_SOAK_ROUNDS", defaultCrashRounds))))
	pods := max(minGCPods, int(gcPodsPerCrashPod*float64(framework.EnvInt(t, "CNISHIM_SOAK_PODS", defaultCrashPods))))
	extra := pods / 4 // set-ups held by each server-side pass
	if pods+2*extra > maxCrashPods {
		t.Fatalf("CNISHIM_SOAK_PODS: %d GC pods and %d held set-ups: at most %d", pods, 2*extra, maxCrashPods)
	}
	seed := runSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6c))
	n := newCrashNode(t, pods+2*extra)
	n.slowGC(t)
	n.before = leakcheck.Take(n.scope())

	n.Start()
	start := time.Now()
	var all []gcStats
	for r, plan := range gcPlans(rng, rounds) {
		s := n.gcRound(r, plan, pods, extra)
		t.Log(s)
		all = append(all, s)
		if t.Failed() {
			break
		}
	}

	after := leakcheck.Take(n.scope())
	leaks := leakcheck.Leaks(n.before, after)
	for _, l := range leaks {
		n.Errorf("left behind after all rounds: %s", l)
	}
	var kills, landed, stepOne, stepTwo, stale, collected, held, heldReady, ready, intact, sumLeaks int
	for _, s := range all {
		for _, k := range s.kills {
			kills++
			if k.missed == "" {
				landed++
				if k.phase == phaseStale {
					stepOne++
					collected += k.collected
				} else {
					stepTwo++
				}
			}
		}
		stale += s.stale
		held += s.held
		heldReady += s.heldReady
		ready += s.ready
		intact += s.intact
		sumLeaks += s.leaks
	}
	t.Logf("SUMMARY GC kills: %d rounds, %d kills in %v (seed %d): %d landed amid a GC pass (%d amid the collection of stale sandboxes, "+
		"%d amid the plugins' GC), %d missed; %d sandboxes made stale, %d collected by passes later cut off; %d set-ups held by "+
		"server-side passes at kills, %d of them ready after; %d ready after the restarts, %d intact; %d leaks",
		len(all), kills, time.Since(start).Round(time.Second), seed, landed, stepOne, stepTwo, kills-landed, stale, collected,
		held, heldReady, ready, intact, sumLeaks+len(leaks))
	if len(all) != rounds {
		n.Fatalf("ran %d of %d rounds", len(all), rounds)
	}
}

// Where in a GC pass a kill is aimed.
const (
	phaseStale    = "stale sandboxes" // the collection of the stale sandboxes' recorded attachments
	phasePluginGC = "plugin GC"       // the CNI GC of the network's plugins
)

// slowGC puts a cnitest plugin in the network, between bridge and portmap, whose GC takes
// gcPluginSleep; on ADD it passes the bridge's result on, and DEL, CHECK and STATUS succeed.
func (n *crashNode) slowGC(t *testing.T) {
	t.Helper()
	plugintest.MustInstallAs(t, n.binDir, "cnitest")
	behavior := filepath.Join(t.TempDir(), "cnitest-slow-gc.json")
	plugintest.MustWriteBehavior(t, behavior, plugintest.Behavior{Commands: map[string]plugintest.Action{
		"GC": {SleepMS: int(gcPluginSleep / time.Millisecond)},
	}})
	cnitest := fmt.Sprintf(`{"type": "cnitest", "behavior": %q}`, behavior)
	conf := framework.Conflist(n.net.CNIVersion, n.netName, n.net.BridgePlugin(), cnitest, framework.PortmapPlugin)
	if err := os.WriteFile(filepath.Join(n.ConfDir, "10-soak.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gcRound runs one round: pods set up, the kills its plan says, the passes run again to the
// end, the checks of what the restarted server kept, then crictl stopp and rmp of everything,
// a GC pass, and the leak check. A server runs at the start and the end of a round.
func (n *crashNode) gcRound(round int, plan gcPlan, pods, extra int) gcStats {
	t := n.t
	t.Helper()
	s := gcStats{round: round, plan: plan, pods: pods}
	roundStart := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	conns := make([]runtimeapi.RuntimeServiceClient, crashClients)
	for i := range conns {
		conn, rt := n.Dial()
		defer conn.Close()
		conns[i] = rt
	}

	var ids []string
	_, _, wait := n.runPodRange(ctx, round, 0, pods, conns)
	for i, o := range wait() {
		if o.err != nil {
			n.Errorf("GC round %d: pod %d: set-up, with no kill, failed: %v", round, i, o.err)
			continue
		}
		ids = append(ids, o.id)
	}
	n.addIDs(ids...)

	var want expectation
	switch plan.kind {
	case gcStartUp, gcLocal:
		kept, stale := n.forget(round, ids)
		s.stale = len(stale)
		want.ready = kept
		if plan.kind == gcStartUp {
			n.killStartUpGC(ctx, round, plan, stale, &s)
		} else {
			n.killLocalGC(ctx, round, plan, kept, stale, &s)
		}
	case gcServer:
		want.ready = n.killServerGC(ctx, round, plan, extra, conns, &s)
		want.ready = append(want.ready, ids...)
	}
	for i, k := range s.kills {
		if k.missed != "" {
			n.Errorf("GC round %d: kill %d did not cut its pass off: %s", round, i+1, k)
		}
	}

	n.Start()
	rs := roundStats{group: plan.group}
	listed := n.checkRestart(ctx, round, want, &rs)
	s.listed, s.ready, s.intact = rs.listed, rs.ready, rs.intact
	s.emptyReservations += rs.emptyReservations
	if s.ready != len(want.ready) {
		n.Errorf("GC round %d: %d sandboxes ready after the restart, want the %d known ready", round, s.ready, len(want.ready))
	}
	n.removeAll(ctx, round, listed)
	s.leaks = n.checkNoLeaks(ctx, round)
	s.took = time.Since(roundStart)
	return s
}

// forget stops the server and makes three in four of ids stale: their sandbox records are
// removed, as if the sandboxes were gone, while their network, namespace and attachment
// records stay for a GC pass to release. It returns the IDs kept and those made stale.
func (n *crashNode) forget(round int, ids []string) (kept, stale []string) {
	n.t.Helper()
	n.Stop()
	for i, id := range ids {
		if i%4 == 0 {
			kept = append(kept, id)
			continue
		}
		if err := os.Remove(filepath.Join(n.StateDir, "sandboxes", id+".json")); err != nil {
			n.Fatalf("GC round %d: forget sandbox %s: %v", round, id, err)
		}
		stale = append(stale, id)
	}
	if left := n.staleLeft(stale); left != len(stale) {
		n.Fatalf("GC round %d: %d of %d sandboxes to make stale have an attachment record", round, left, len(stale))
	}
	return kept, stale
}

// staleLeft counts the sandboxes of stale that still have an attachment record: the ones a
// GC pass has yet to collect.
func (n *crashNode) staleLeft(stale []string) int {
	left := 0
	for _, id := range stale {
		if _, err := os.Stat(filepath.Join(networkRecordsDir(n.StateDir), id+".json")); err == nil {
			left++
		}
	}
	return left
}

// networkRecordsDir is where in a state dir the network plugin records its attachments (see
// setUpRecords).
func networkRecordsDir(stateDir string) string { return filepath.Join(stateDir, "network") }

// awaitStale waits until the pass running in a process has collected target of the stale
// sandboxes, or, for a target of 0, runs its first DEL. over says, when not empty, that the
// process is past the pass (it answers, or exited): the round fails.
func (n *crashNode) awaitStale(ctx context.Context, round int, stale []string, target int, over func() string) {
	n.t.Helper()
	for {
		if target == 0 && chainProcs(n.binDir)["DEL"] > 0 || target > 0 && len(stale)-n.staleLeft(stale) >= target {
			return
		}
		if why := over(); why != "" {
			n.Fatalf("GC round %d: %s before %d of %d stale sandboxes were collected", round, why, target, len(stale))
		}
		if err := framework.Pause(ctx, 2*time.Millisecond); err != nil {
			n.Fatalf("GC round %d: the collection of stale sandboxes did not get under way: %v", round, err)
		}
	}
}

// awaitPluginGC waits until a plugin of the network runs a CNI GC, then delay more; over is
// as for awaitStale.
func (n *crashNode) awaitPluginGC(ctx context.Context, round int, delay time.Duration, over func() string) {
	n.t.Helper()
	for chainProcs(n.binDir)["GC"] == 0 {
		if why := over(); why != "" {
			n.Fatalf("GC round %d: %s before a plugin GC was seen", round, why)
		}
		if err := framework.Pause(ctx, 2*time.Millisecond); err != nil {
			n.Fatalf("GC round %d: no plugin GC got under way: %v", round, err)
		}
	}
	if err := framework.Pause(ctx, delay); err != nil {
		n.t.Fatal(err)
	}
}

// killGC counts the plugin processes in flight, checks with over that the process to be
// killed is still amid its pass, kills it, and waits for its orphaned plugins to exit, as a
// service manager would before starting the unit again.
func (n *crashNode) killGC(ctx context.Context, round int, k *gcKill, start time.Time, over func() string, kill func()) {
	n.t.Helper()
	k.inFlight = chainProcs(n.binDir)
	why := over()
	k.after = time.Since(start)
	kill()
	left, err := framework.WaitPluginProcs(ctx, n.binDir)
	if err != nil {
		n.Fatalf("GC round %d: %v", round, err)
	}
	k.orphans = left
	k.missed = why
}

// serverOver says why the server launched last is past its start-up GC: it answers, or it
// exited.
func (n *crashNode) serverOver() string {
	switch {
	case n.Exited():
		return "cnishim serve exited"
	case n.Answers():
		return "cnishim serve answers (its start-up GC is over)"
	}
	return ""
}

// killStartUpGC starts the server twice over the stale sandboxes and kills it during its
// start-up GC: first once its pass has collected plan.share of them, then amid the plugins'
// GC of the next start's pass, after the rest were collected.
func (n *crashNode) killStartUpGC(ctx context.Context, round int, plan gcPlan, stale []string, s *gcStats) {
	n.t.Helper()
	first := gcKill{what: "cnishim serve", phase: phaseStale, stale: len(stale)}
	start := time.Now()
	n.Launch()
	n.awaitStale(ctx, round, stale, int(plan.share*float64(len(stale))), n.serverOver)
	n.killGC(ctx, round, &first, start, n.serverOver, func() { n.kill(plan.group) })
	first.collected = len(stale) - n.staleLeft(stale)
	checkCutOff(&first)
	s.kills = append(s.kills, first)

	second := gcKill{what: "cnishim serve", phase: phasePluginGC}
	start = time.Now()
	n.Launch()
	n.awaitPluginGC(ctx, round, plan.delays[0], n.serverOver)
	n.killGC(ctx, round, &second, start, n.serverOver, func() { n.kill(plan.group) })
	if left := n.staleLeft(stale); left > 0 {
		n.Errorf("GC round %d: the restarted server's start-up GC ran its plugins' GC with %d stale sandboxes not collected", round, left)
	}
	checkCutOff(&second)
	s.kills = append(s.kills, second)
}

// checkCutOff records in k.missed, unless it holds a reason already, how the kill did not cut
// its pass off: amid the collection of stale sandboxes, none had been collected nor was being,
// or none was left; amid the plugins' GC, none was running.
func checkCutOff(k *gcKill) {
	if k.missed != "" {
		return
	}
	switch k.phase {
	case phaseStale:
		if k.collected == 0 && k.inFlight["DEL"] == 0 {
			k.missed = "no stale sandbox was being collected"
		} else if k.collected == k.stale {
			k.missed = "every stale sandbox was collected"
		}
	case phasePluginGC:
		if k.inFlight["GC"] == 0 {
			k.missed = "no plugin GC was running"
		}
	}
}

// gcCmd is a `cnishim gc` run by the test, in a process group of its own.
type gcCmd struct {
	cmd   *exec.Cmd
	out   bytes.Buffer // its stdout and stderr; read once done is closed
	start time.Time
	done  chan struct{}
	err   error // how it exited; set once done is closed
}

// startGC starts `cnishim gc` against the node: with local, the pass runs in the command
// with valid as the valid set (--sandbox-ids), over the server's dirs, as an operator runs
// it while no server does; else the command asks the server for a pass.
func (n *crashNode) startGC(ctx context.Context, local bool, valid []string) *gcCmd {
	n.t.Helper()
	args := []string{"gc", "--listen", "unix://" + n.Sock, "-v", "4"}
	if local {
		args = append(args, "--sandbox-ids", strings.Join(valid, ","), "--state-dir", n.StateDir,
			"--cni-conf-dir", n.ConfDir, "--cni-bin-dir", n.binDir, "--cni-cache-dir", n.CacheDir)
	}
	c := &gcCmd{cmd: exec.CommandContext(ctx, env.Cnishim, args...), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.start = time.Now()
	if err := c.cmd.Start(); err != nil {
		n.Fatalf("cnishim gc: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c
}

// over says, when not empty, that the command exited.
func (c *gcCmd) over() string {
	select {
	case <-c.done:
		return fmt.Sprintf("cnishim gc exited (%v: %s)", c.err, strings.TrimSpace(c.out.String()))
	default:
		return ""
	}
}

// kill kills the command with SIGKILL, its process group too if group, and waits for it.
func (c *gcCmd) kill(group bool) {
	pid := c.cmd.Process.Pid
	if group {
		pid = -pid
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-c.done
}

// killLocalGCProc kills a local `cnishim gc` as crashNode.kill kills the server: alone, or
// with its process group and those of its plugins.
func (n *crashNode) killLocalGCProc(c *gcCmd, group bool) {
	n.t.Helper()
	c.kill(group)
	if group {
		n.killPlugins()
	}
}

// wait waits for the command and returns its output, and an error unless it exited 0.
func (c *gcCmd) wait() (string, error) {
	<-c.done
	return c.out.String(), c.err
}

// killLocalGC runs `cnishim gc --sandbox-ids` with the kept sandboxes as the valid set and no
// server running, and kills it twice: once it has collected plan.share of the stale
// sandboxes, then, run again, amid the plugins' GC. A third run must take the state dir's
// lock and finish; then the stale sandboxes hold nothing but their namespaces, which no
// sandbox record names and the next server start removes.
func (n *crashNode) killLocalGC(ctx context.Context, round int, plan gcPlan, kept, stale []string, s *gcStats) {
	n.t.Helper()
	first := gcKill{what: "cnishim gc --sandbox-ids", phase: phaseStale, stale: len(stale)}
	c := n.startGC(ctx, true, kept)
	n.awaitStale(ctx, round, stale, int(plan.share*float64(len(stale))), c.over)
	n.killGC(ctx, round, &first, c.start, c.over, func() { n.killLocalGCProc(c, plan.group) })
	first.collected = len(stale) - n.staleLeft(stale)
	checkCutOff(&first)
	s.kills = append(s.kills, first)

	second := gcKill{what: "cnishim gc --sandbox-ids", phase: phasePluginGC}
	c = n.startGC(ctx, true, kept)
	n.awaitPluginGC(ctx, round, plan.delays[0], c.over)
	n.killGC(ctx, round, &second, c.start, c.over, func() { n.killLocalGCProc(c, plan.group) })
	checkCutOff(&second)
	s.kills = append(s.kills, second)

	out, err := n.startGC(ctx, true, kept).wait()
	if want := fmt.Sprintf("GC done: %d valid sandboxes", len(kept)); err != nil || !strings.Contains(out, want) {
		n.Errorf("GC round %d: cnishim gc --sandbox-ids after the kills: %v: %s", round, err, out)
	}
	if left := n.staleLeft(stale); left > 0 {
		n.Errorf("GC round %d: %d stale sandboxes still have an attachment record after cnishim gc --sandbox-ids", round, left)
	}
	st := leakcheck.Take(n.scope())
	if plan.group {
		s.emptyReservations += framework.RemoveEmptyReservations(n.T, n.ipamDir, st)
		st = leakcheck.Take(n.scope())
	}
	held := n.heldBy(st)
	for _, id := range stale {
		if h := held[id]; len(h.ips) > 0 || h.cache {
			n.Errorf("GC round %d: after cnishim gc --sandbox-ids, stale sandbox %s still holds %+v", round, id, h)
		}
		for _, l := range st.Rules {
			if strings.Contains(l, id) {
				n.Errorf("GC round %d: after cnishim gc --sandbox-ids, a rule names stale sandbox %s: %s", round, id, l)
			}
		}
	}
}

// killServerGC has the server, holding the round's ready pods, run two passes asked by
// `cnishim gc`, each with extra set-ups sent once its plugins' GC runs (the pass holds them
// back): it kills the first pass's `cnishim gc` (the server must cancel the pass and let the
// set-ups through), then the server amid the second (alone or with its process group). It
// returns the held set-ups answered ready, which must be ready after the restart.
func (n *crashNode) killServerGC(ctx context.Context, round int, plan gcPlan, extra int, conns []runtimeapi.RuntimeServiceClient, s *gcStats) []string {
	n.t.Helper()
	var ready []string
	for i, killServer := range []bool{false, true} {
		k := gcKill{what: "cnishim gc", phase: phasePluginGC}
		if killServer {
			k.what = "cnishim serve"
		}
		c := n.startGC(ctx, false, nil)
		n.awaitPluginGC(ctx, round, 0, c.over)
		_, returned, wait := n.runPodRange(ctx, round, s.pods+i*extra, extra, conns)
		if err := framework.Pause(ctx, plan.delays[i]); err != nil {
			n.t.Fatal(err)
		}
		s.held += extra - int(returned.Load())
		over := func() string {
			if why := c.over(); why != "" {
				return why
			}
			return n.serverExited()
		}
		var killAt time.Time
		if killServer {
			n.killGC(ctx, round, &k, c.start, over, func() { killAt = time.Now(); n.kill(plan.group) })
			if out, err := c.wait(); err == nil {
				n.Errorf("GC round %d: cnishim gc succeeded although the server was killed amid its pass: %s", round, out)
			}
		} else {
			n.killGC(ctx, round, &k, c.start, over, func() { killAt = time.Now(); c.kill(false) })
		}
		checkCutOff(&k)
		s.kills = append(s.kills, k)
		for j, o := range wait() {
			switch {
			case o.err == nil:
				ready = append(ready, o.id)
				s.heldReady++
			case !killServer || o.at.Before(killAt):
				n.Errorf("GC round %d: held set-up %d failed with no server kill: %v", round, j, o.err)
			}
		}
	}
	n.addIDs(ready...)
	return ready
}

// serverExited says, when not empty, that the server exited: it cannot be amid a pass.
func (n *crashNode) serverExited() string {
	if n.Exited() {
		return "cnishim serve exited"
	}
	return ""
}
