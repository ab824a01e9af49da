//go:build linux

package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/test/framework"
)

// Crash test sizes: the figures, and the CRI clients that share the calls.
const (
	defaultCrashRounds = 10
	defaultCrashPods   = 200
	crashClients       = 16
	maxCrashPods       = 1000 // the subnet is a /22 and the host ports a block of 1,500
	containerPort      = framework.ContainerPort
)

// crashNode is the crash test's piece of a node: a `cnishim serve` over dirs of its own, with a
// bin dir of plugin copies, and a bridge + host-local + portmap network on a bridge, a subnet
// and a block of host ports no other test uses. The server leads a process group of its own,
// with the plugins it runs, so that kill can take them down together.
type crashNode struct {
	*framework.Server
	t        *testing.T
	binDir   string
	ipamDir  string
	netName  string
	bridge   string
	subnet   string
	net      *framework.Net
	portBase int
	pods     int

	mu  sync.Mutex      // guards the fields below
	ids map[string]bool // every sandbox ID the test saw: returned, recorded or listed
	// failures repeats every failure message, for the summary that ends a failed test's
	// output after the server logs (a CI excerpt shows the end of the output).
	failures []string

	before leakcheck.State // what the scope held before the first server started
}

func newCrashNode(t *testing.T, pods int) *crashNode {
	t.Helper()
	k := framework.ProcessSlot(8)
	dir := t.TempDir()
	n := &crashNode{
		t:        t,
		binDir:   filepath.Join(dir, "bin"),
		ipamDir:  filepath.Join(dir, "ipam"),
		netName:  "soak-crash",
		bridge:   fmt.Sprintf("cnisoakc%d", k),
		subnet:   fmt.Sprintf("10.88.%d.0/22", 4*k), // inside 10.88.0.0/19, only on these bridges
		portBase: 20000 + 1500*k,
		pods:     pods,
		ids:      map[string]bool{},
	}
	n.net = framework.NewNet(t, n.netName, n.bridge, n.subnet)
	n.net.IPAMDir, n.net.CNIVersion = n.ipamDir, "1.1.0" // 1.1.0: GC reaches the plugins as well
	copyPlugins(t, n.binDir, requiredPlugins...)
	n.Server = framework.NewServer(t, env, framework.Options{
		Net:              n.net,
		BinDirs:          []string{n.binDir},
		OperationTimeout: 2 * time.Minute,
		ShutdownGrace:    time.Minute,
		Verbosity:        2,
		ProcessGroup:     true,
		CrictlTimeout:    2 * time.Minute,
		OwnCleanup:       true,
		Report:           n.record,
	})
	if err := os.WriteFile(filepath.Join(n.ConfDir, "10-soak.conflist"), []byte(n.conflist()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.cleanUp)
	return n
}

// conflist is the network: CNI 1.1.0, so that GC reaches the plugins as well.
func (n *crashNode) conflist() string { return n.net.Conflist() }

// scope is everything the node's pods can leave behind; rules are looked for by every sandbox
// ID seen and by every host port of the test's block.
func (n *crashNode) scope() leakcheck.Scope {
	n.mu.Lock()
	needles := make([]string, 0, len(n.ids)+n.pods)
	for id := range n.ids {
		needles = append(needles, id)
	}
	n.mu.Unlock()
	for i := range n.pods {
		needles = append(needles, fmt.Sprintf("dport %d", n.portBase+i))
	}
	return leakcheck.Scope{
		HostLocalDirs: []string{n.ipamDir},
		CacheDir:      n.CacheDir,
		NetnsDir:      n.NetnsDir(),
		Bridges:       []string{n.bridge},
		RuleNeedles:   needles,
	}
}

func (n *crashNode) record(msg string) {
	n.mu.Lock()
	n.failures = append(n.failures, msg)
	n.mu.Unlock()
}

func (n *crashNode) addIDs(ids ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range ids {
		n.ids[id] = true
	}
}

// kill sends SIGKILL to the server alone (a runtime unit with KillMode=process, whose plugin
// children live on as orphans) or to its whole process group and those of its plugins
// (KillMode=control-group: the plugins die mid-operation too), and waits for the server to be
// gone.
func (n *crashNode) kill(group bool) {
	n.t.Helper()
	if group {
		n.KillGroup()
		n.killPlugins()
	} else {
		n.Kill()
	}
}

// killPlugins sends SIGKILL to every plugin process from the node's bin dir, and to the
// process group each leads, until none is left: each plugin runs in a process group of its
// own, so a kill of its runtime's group does not reach it, while a unit's control-group kill
// does. Run it right after the runtime's own kill: no new plugin starts then.
func (n *crashNode) killPlugins() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(n.t.Context(), time.Minute)
	defer cancel()
	for {
		procs, err := framework.PluginProcs(n.binDir)
		if err != nil {
			n.Fatalf("kill plugins: %v", err)
		}
		if len(procs) == 0 {
			return
		}
		for _, p := range procs {
			f, _, _ := strings.Cut(p, " ")
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL) // ESRCH unless it leads a group
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := framework.Pause(ctx, 5*time.Millisecond); err != nil {
			n.Fatalf("kill plugins: still running %v: %v", procs, err)
		}
	}
}

// recordedIDs returns the sandbox IDs the server's state dir names: records and namespaces.
func (n *crashNode) recordedIDs() (records, all []string) {
	seen := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(n.StateDir, "sandboxes"))
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			records = append(records, id)
			seen[id] = true
		}
	}
	entries, _ = os.ReadDir(filepath.Join(n.StateDir, "netns"))
	for _, e := range entries {
		seen[e.Name()] = true
	}
	for id := range seen {
		all = append(all, id)
	}
	return records, all
}

// cleanUp runs at the end of the test, pass or fail: it removes every sandbox the server still
// lists, stops the server, then releases through the plugins anything still held for a sandbox
// the test saw (a failed test may leave some), unmounts the namespaces, and fails the test if
// the server reported a data race.
func (n *crashNode) cleanUp() {
	t := n.t
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Minute)
	defer cancel()
	running := n.Running()
	if records, _ := n.recordedIDs(); !running && len(records) > 0 {
		n.Start()
		running = true
	}
	if running {
		if pods, err := n.ListPods(ctx); err != nil {
			n.Errorf("list pods at cleanup: %v", err)
		} else if len(pods) > 0 {
			ids := make([]string, len(pods))
			for i, p := range pods {
				ids[i] = p.ID
			}
			if !t.Failed() {
				n.Errorf("the test left %d sandboxes", len(ids))
			}
			if _, err := n.CrictlEach(ctx, "rmp -f", ids); err != nil {
				n.Errorf("remove leftover sandboxes: %v", err)
			}
		}
		n.Stop()
	}
	if t.Failed() {
		n.scrub(ctx)
	}
	mounted, _ := netns.Mounted(n.NetnsDir())
	for _, p := range mounted {
		if err := netns.Remove(p); err != nil {
			n.Errorf("remove netns %s: %v", p, err)
		}
	}
	for _, l := range n.Raced() {
		n.Errorf("cnishim serve reported a data race: see %s\n%s", l, n.LogTail(len(n.Logs())))
	}
	if t.Failed() {
		t.Logf("server logs:\n%s", n.LogTail(3))
		n.mu.Lock()
		failures := slices.Clone(n.failures)
		n.mu.Unlock()
		t.Logf("FAILED: %d failures (full messages above, before the server logs):\n  %s", len(failures), strings.Join(failures, "\n  "))
	}
}

// scrub deletes, with the plugins and the network's config, every sandbox the test saw that
// still holds an IP, a cache entry or a rule, so that a failed run leaves the machine clean.
func (n *crashNode) scrub(ctx context.Context) {
	st := leakcheck.Take(n.scope())
	held := map[string]bool{}
	for _, c := range st.Cache {
		for id := range n.ids {
			if strings.Contains(c, id) {
				held[id] = true
			}
		}
	}
	for _, line := range st.Rules {
		for id := range n.ids {
			if strings.Contains(line, id) {
				held[id] = true
			}
		}
	}
	stores, _ := os.ReadDir(n.ipamDir)
	for _, s := range stores {
		files, _ := os.ReadDir(filepath.Join(n.ipamDir, s.Name()))
		for _, f := range files {
			data, _ := os.ReadFile(filepath.Join(n.ipamDir, s.Name(), f.Name()))
			if id, _, _ := strings.Cut(string(data), "\n"); n.ids[strings.TrimSpace(id)] {
				held[strings.TrimSpace(id)] = true
			}
		}
	}
	if len(held) == 0 {
		return
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, n.CacheDir, nil)
	list, err := libcni.ConfListFromBytes([]byte(n.conflist()))
	if err != nil {
		n.Errorf("scrub: %v", err)
		return
	}
	for id := range held {
		rt := &libcni.RuntimeConf{ContainerID: id, IfName: "eth0", CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": n.portBase, "containerPort": containerPort, "protocol": "tcp"}},
		}}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			n.Errorf("scrub sandbox %s: %v", id, err)
		}
	}
	n.t.Logf("scrubbed %d sandboxes the server left", len(held))
}

// podConfig is the i-th pod of a round: its own name and UID, and a host port of the test's
// block mapped to the container port.
func (n *crashNode) podConfig(round, i int) *runtimeapi.PodSandboxConfig {
	name := fmt.Sprintf("soak-%d-%d", round, i)
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "soak", Uid: "uid-" + name},
		Hostname: name,
		Labels:   map[string]string{"soak": "crash", "round": strconv.Itoa(round)},
		PortMappings: []*runtimeapi.PortMapping{{
			Protocol: runtimeapi.Protocol_TCP, ContainerPort: containerPort, HostPort: int32(n.portBase + i),
		}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// roundKind is where in its pods' lives a round kills the server.
type roundKind int

const (
	// killSetUp kills the server amid a storm of RunPodSandbox calls.
	killSetUp roundKind = iota
	// killTeardown sets every pod up, then kills the server amid a storm of StopPodSandbox
	// and RemovePodSandbox calls.
	killTeardown
	// killRecovery kills the server amid a storm of set-ups, starts it again, and kills it a
	// second time while its recovery rolls the cut-off set-ups back, before it listens.
	killRecovery
)

func (k roundKind) String() string { return [...]string{"set-up", "teardown", "recovery"}[k] }

// Kill delays: each kind of round draws its kill points from a range of its own.
const (
	maxSetUpDelay    = 6 * time.Second // from the first sandbox record: covers the whole storm
	maxTeardownDelay = 4 * time.Second // from the teardown calls going out
	// A recovery round's first kill comes soon after every set-up reached the server, so that
	// the recovery has many cut-off set-ups to roll back. Its second comes once the recovery
	// has rolled back a share of them, below this bound so that the kill lands before the
	// recovery ends.
	maxFirstRecoveryDelay = 500 * time.Millisecond // from the last sandbox record
	maxRecoveredShare     = 0.9
)

// roundPlan is how one round kills the server.
type roundPlan struct {
	kind roundKind
	// delay is the first kill's: from the first set-up reaching the server (set-up rounds),
	// from the last (recovery rounds), or from the teardown calls going out (teardown rounds).
	delay time.Duration
	// recoveredShare is when a recovery round's second kill comes: once the recovery has
	// rolled back this share of the cut-off set-ups (0: at its first DEL).
	recoveredShare float64
	group          bool // kill the server's process group, not the server alone
	parallel       int  // the server's --max-parallel-setups; 0: its default
}

// flags are the server flags of a round.
func (p roundPlan) flags() []string {
	if p.parallel == 0 {
		return nil
	}
	return []string{"--max-parallel-setups", strconv.Itoa(p.parallel)}
}

// crashPlans draws the rounds' kill points. Round r is of kind r mod 3 (set-up, teardown,
// recovery), kills the server alone in even rounds and its process group in odd ones (so every
// kind meets both), and runs the server with its default bound on set-ups run at once (the CPU
// count) or with 16, two rounds each in turn, so that many chains are cut off mid-way in some
// rounds. Among the rounds of one kind, the j-th draws its delay from the j-th of as many equal
// slices of the kind's range, in a random order, so that kills land in every phase of a storm
// (and, for the second kill of a recovery round, of the recovery).
func crashPlans(rng *rand.Rand, rounds int) []roundPlan {
	plans := make([]roundPlan, rounds)
	byKind := make([][]int, 3)
	for r := range plans {
		kind := roundKind(r % 3)
		plans[r] = roundPlan{kind: kind, group: r%2 == 1, parallel: []int{0, 16}[r/2%2]}
		byKind[kind] = append(byKind[kind], r)
	}
	// spread returns, for the j-th of the rounds, a point of the j-th slice of [0, 1).
	spread := func(rounds []int) []float64 {
		out := make([]float64, len(rounds))
		for j, k := range rng.Perm(len(rounds)) {
			out[j] = (float64(k) + rng.Float64()) / float64(len(rounds))
		}
		return out
	}
	for j, f := range spread(byKind[killSetUp]) {
		plans[byKind[killSetUp][j]].delay = time.Duration(f * float64(maxSetUpDelay))
	}
	for j, f := range spread(byKind[killTeardown]) {
		plans[byKind[killTeardown][j]].delay = time.Duration(f * float64(maxTeardownDelay))
	}
	for j, f := range spread(byKind[killRecovery]) {
		r := byKind[killRecovery][j]
		plans[r].delay = time.Duration(rng.Int64N(int64(maxFirstRecoveryDelay)))
		plans[r].recoveredShare = f * maxRecoveredShare
	}
	return plans
}

// roundStats is what one kill round counted.
type roundStats struct {
	round    int
	kind     roundKind
	group    bool // the kills took the plugins' process group too
	parallel int  // the server's bound on set-ups run at once; 0: its default
	pods     int  // pods of the round: RunPodSandbox calls started
	rounds   int  // rounds counted: 1, or in a sum, how many were summed

	// The first kill.
	delay      time.Duration // to the kill from the first record (recovery: the last; teardown: the first teardown call)
	sinceCalls time.Duration // from the first RunPodSandbox call to the kill (set-up and recovery rounds)
	succeeded  int           // RunPodSandbox calls answered with a sandbox ID before the kill
	refused    int           // calls failed before a kill (must be 0)
	records    int           // sandbox records on disk right after the kill
	midChain   int           // ADD and DEL plugin processes running just before the kill: the chains it cut off
	orphans    int           // plugin processes still running right after the kill

	// Teardown rounds: of the pods all set up, the storm stops and removes three in four.
	bystanders      int // ready sandboxes the storm left alone
	stopsAnswered   int // StopPodSandbox calls answered before the kill
	removesAnswered int // RemovePodSandbox calls answered before the kill

	// Recovery rounds: the second kill, amid the recovery.
	toRecover       int           // cut-off set-ups (records still creating) the recovery had to roll back
	recoveredAtKill int           // of which it had rolled back before the second kill
	recoveryDelay   time.Duration // from the second start to the second kill
	recoveryChains  int           // DEL plugin processes running just before the second kill
	recoveryOrphans int           // plugin processes still running right after it
	recoveryMissed  int           // 1 if the server already listened at the second kill: it missed the recovery

	// After the last restart.
	listed   int // sandboxes crictl listed
	ready    int // of which SANDBOX_READY
	intact   int // of which hold their IP (reserved, and on eth0), netns, cache entry and portmap rules
	halfTorn int // of which a cut-off teardown had partly torn down (teardown rounds)
	stopped  int // sandboxes crictl stopp stopped
	removed  int // sandboxes crictl rmp removed
	leaks    int // things left behind after the cleanup (must be 0)
	// emptyReservations are host-local reservation files with no owner written, found after a
	// process-group kill: host-local was killed between creating the file and writing it.
	// No CNI operation can release such a file; the test counts and removes them.
	emptyReservations int

	restart  time.Duration // from the (first) kill until the last restarted server answered
	teardown time.Duration // crictl stopp and rmp of everything listed, and cnishim gc
	took     time.Duration
}

func (r roundStats) String() string {
	mode := "server only"
	if r.group {
		mode = "process group"
	}
	parallel := "default"
	if r.parallel > 0 {
		parallel = strconv.Itoa(r.parallel)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "round %d (%s): ", r.round, r.kind)
	switch r.kind {
	case killTeardown:
		fmt.Fprintf(&b, "%d pods set up; kill (%s, parallel set-ups %s) %v after the teardown calls went out: %d bystanders, "+
			"stops answered before kill %d, removes answered before kill %d, failed before kill %d, records at kill %d, chains cut %d, orphan plugins %d",
			r.pods, mode, parallel, r.delay.Round(time.Millisecond), r.bystanders, r.stopsAnswered, r.removesAnswered, r.refused, r.records, r.midChain, r.orphans)
	default:
		which := "first"
		if r.kind == killRecovery {
			which = "last"
		}
		fmt.Fprintf(&b, "kill (%s, parallel set-ups %s) %v after the %s record (%v after the first call): started %d, succeeded before kill %d, "+
			"failed before kill %d, records at kill %d, chains cut %d, orphan plugins %d",
			mode, parallel, r.delay.Round(time.Millisecond), which, r.sinceCalls.Round(time.Millisecond), r.pods, r.succeeded, r.refused, r.records, r.midChain, r.orphans)
	}
	if r.kind == killRecovery {
		fmt.Fprintf(&b, "; second kill %v after the second start: %d of %d cut-off set-ups rolled back, chains cut %d, orphan plugins %d",
			r.recoveryDelay.Round(time.Millisecond), r.recoveredAtKill, r.toRecover, r.recoveryChains, r.recoveryOrphans)
		if r.recoveryMissed > 0 {
			b.WriteString(" (the recovery was over: the server listened)")
		}
	}
	fmt.Fprintf(&b, "; found after restart %d (%d ready: %d intact, %d half torn down), stopped %d, removed %d, leaks %d, "+
		"empty host-local reservations %d; restart took %v, teardown %v, round %v",
		r.listed, r.ready, r.intact, r.halfTorn, r.stopped, r.removed, r.leaks, r.emptyReservations,
		r.restart.Round(time.Millisecond), r.teardown.Round(time.Millisecond), r.took.Round(time.Millisecond))
	return b.String()
}

// add sums the counts of o into r.
func (r *roundStats) add(o roundStats) {
	r.pods += o.pods
	r.succeeded += o.succeeded
	r.refused += o.refused
	r.records += o.records
	r.midChain += o.midChain
	r.orphans += o.orphans
	r.bystanders += o.bystanders
	r.stopsAnswered += o.stopsAnswered
	r.removesAnswered += o.removesAnswered
	r.toRecover += o.toRecover
	r.recoveredAtKill += o.recoveredAtKill
	r.recoveryChains += o.recoveryChains
	r.recoveryOrphans += o.recoveryOrphans
	r.rounds += o.rounds
	r.recoveryMissed += o.recoveryMissed
	r.listed += o.listed
	r.ready += o.ready
	r.intact += o.intact
	r.halfTorn += o.halfTorn
	r.stopped += o.stopped
	r.removed += o.removed
	r.leaks += o.leaks
	r.emptyReservations += o.emptyReservations
}

// The runtime is killed with SIGKILL, in rounds, at three points of its pods' lives, and
// restarted: while 200 pod sandboxes are being set up by 16 CRI clients at once; while 16
// clients stop and remove 150 of 200 ready sandboxes at once; and while its restart's recovery
// rolls back the set-ups a first kill cut off, before it listens (then it is restarted once
// more). Every sandbox that was answered ready before a kill, and not torn down since, is still
// ready after the restart with its IP, netns and cache entry; a sandbox whose stop was answered
// is not ready, one whose removal was answered is gone, and one whose teardown was cut off is
// ready, stopped or gone, never holding anything unless ready; everything else the cut-off
// set-ups and teardowns made has been released by the restart's recovery; and once crictl has
// stopped and removed every sandbox it lists and a GC pass has run, nothing is left: no IP in
// the host-local store, no veth on the bridge, no netns mount, no libcni cache entry, no set-up
// record, no portmap rule for any sandbox or host port of the test.
func TestCrashRestart(t *testing.T) {
	rounds := framework.EnvInt(t, "CNISHIM_SOAK_ROUNDS", defaultCrashRounds)
	pods := framework.EnvInt(t, "CNISHIM_SOAK_PODS", defaultCrashPods)
	if pods > maxCrashPods {
		t.Fatalf("CNISHIM_SOAK_PODS=%d: at most %d", pods, maxCrashPods)
	}
	seed := runSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x50a6))
	n := newCrashNode(t, pods)
	n.before = leakcheck.Take(n.scope())

	plans := crashPlans(rng, rounds)
	n.Start(plans[0].flags()...)
	start := time.Now()
	var all []roundStats
	for r := range rounds {
		next := roundPlan{}
		if r+1 < rounds {
			next = plans[r+1]
		}
		rs := n.crashRound(r, plans[r], next)
		t.Log(rs)
		all = append(all, rs)
		if t.Failed() {
			break
		}
	}

	// The suite-wide look: every sandbox ID and host port of every round.
	after := leakcheck.Take(n.scope())
	leaks := leakcheck.Leaks(n.before, after)
	for _, l := range leaks {
		n.Errorf("left behind after all rounds: %s", l)
	}
	var sum roundStats
	kinds := make([]roundStats, 3)
	for _, r := range all {
		sum.add(r)
		kinds[r.kind].add(r)
	}
	n.mu.Lock()
	seen := len(n.ids)
	n.mu.Unlock()
	su, td, rc := kinds[killSetUp], kinds[killTeardown], kinds[killRecovery]
	t.Logf("SUMMARY crash/restart: %d rounds, %d kills in %v (seed %d); "+
		"%d set-up rounds: %d RunPodSandbox calls, %d succeeded before the kill, %d chains cut; "+
		"%d teardown rounds: %d sandboxes set up, %d stops and %d removes answered before the kill, %d chains cut; "+
		"%d recovery rounds: %d RunPodSandbox calls, %d succeeded before the first kill, %d chains cut by it, %d cut-off set-ups to roll back, "+
		"%d rolled back before the second kill, %d chains cut by it, %d second kills after the recovery was over; "+
		"all: %d calls failed before a kill, %d sandbox records at kills, %d orphan plugin processes, %d sandboxes found after restarts (%d ready: %d intact, %d half torn down), "+
		"%d stopped and %d removed with crictl, %d sandbox IDs checked for rules, %d leaks, %d empty host-local reservations after process-group kills",
		len(all), len(all)+rc.rounds, time.Since(start).Round(time.Second), seed,
		su.rounds, su.pods, su.succeeded, su.midChain,
		td.rounds, td.succeeded, td.stopsAnswered, td.removesAnswered, td.midChain,
		rc.rounds, rc.pods, rc.succeeded, rc.midChain, rc.toRecover, rc.recoveredAtKill, rc.recoveryChains, rc.recoveryMissed,
		sum.refused, sum.records, sum.orphans+sum.recoveryOrphans, sum.listed, sum.ready, sum.intact, sum.halfTorn,
		sum.stopped, sum.removed, seen, sum.leaks+len(leaks), sum.emptyReservations)
	if len(all) != rounds {
		n.Fatalf("ran %d of %d rounds", len(all), rounds)
	}
}

// expectation is what the restarted server must show of a round's sandboxes, from what their
// callers were answered before the kill.
type expectation struct {
	ready   []string // set up and never torn down: ready, with IP, netns and cache entry
	stopped []string // StopPodSandbox answered: not ready
	removed []string // RemovePodSandbox answered: not listed
	// cutOff are sandboxes whose teardown the kill cut off: ready (intact or partly torn
	// down), stopped or gone.
	cutOff map[string]bool
}

// crashRound runs one round: a storm of calls, a kill as planned (two for a recovery round), a
// restart (with the next round's flags), the checks of what the restart kept and released,
// then crictl stopp and rmp of everything listed, a GC pass, and the leak check.
func (n *crashNode) crashRound(round int, plan, next roundPlan) roundStats {
	t := n.t
	t.Helper()
	rs := roundStats{round: round, kind: plan.kind, group: plan.group, parallel: plan.parallel, pods: n.pods, rounds: 1}
	roundStart := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	// Sixteen clients, each a connection of its own, share the calls; all are in flight at once.
	conns := make([]runtimeapi.RuntimeServiceClient, crashClients)
	for i := range conns {
		conn, rt := n.Dial()
		defer conn.Close()
		conns[i] = rt
	}
	var (
		killAt time.Time
		want   expectation
	)
	if plan.kind == killTeardown {
		killAt, want = n.teardownStorm(ctx, round, plan, conns, &rs)
	} else {
		killAt, want = n.setUpStorm(ctx, round, plan, conns, &rs)
	}
	recs, recorded := n.recordedIDs()
	rs.records = len(recs)
	n.addIDs(recorded...)
	if plan.kind == killRecovery {
		n.killRecovery(ctx, round, plan, &rs)
	}

	n.Start(next.flags()...)
	rs.restart = time.Since(killAt)
	ids := n.checkRestart(ctx, round, want, &rs)

	teardownStart := time.Now()
	rs.stopped, rs.removed = n.removeAll(ctx, round, ids)
	rs.teardown = time.Since(teardownStart)
	rs.leaks = n.checkNoLeaks(ctx, round)
	rs.took = time.Since(roundStart)
	return rs
}

// removeAll stops and removes the sandboxes ids with crictl, as an operator would, then runs
// `cnishim gc` against the server, and returns how many crictl stopped and removed.
func (n *crashNode) removeAll(ctx context.Context, round int, ids []string) (stopped, removed int) {
	n.t.Helper()
	stopped, err := n.CrictlEach(ctx, "stopp", ids)
	if err != nil {
		n.Errorf("round %d: crictl stopp: %v", round, err)
	}
	removed, err = n.CrictlEach(ctx, "rmp", ids)
	if err != nil {
		n.Errorf("round %d: crictl rmp: %v", round, err)
	}
	if out, err := exec.CommandContext(ctx, env.Cnishim, "gc", "--listen", "unix://"+n.Sock).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), " 0 valid sandboxes") {
		n.Errorf("round %d: cnishim gc: %v: %s", round, err, out)
	}
	return stopped, removed
}

// checkNoLeaks fails the test for every sandbox the server still lists and for everything
// left behind compared with before the first server started: IPs, veths, netns mounts, cache
// entries, rules, sandbox and attachment records, plugin processes. It returns how many things
// were left behind.
func (n *crashNode) checkNoLeaks(ctx context.Context, round int) int {
	n.t.Helper()
	if left, err := n.ListPods(ctx); err != nil || len(left) > 0 {
		n.Errorf("round %d: crictl pods after stopp and rmp: %v, %v", round, left, err)
	}
	st := leakcheck.Take(n.scope())
	leaks := leakcheck.Leaks(n.before, st)
	if records, _ := n.recordedIDs(); len(records) > 0 {
		leaks = append(leaks, fmt.Sprintf("sandbox records: %v", records))
	}
	if records := n.setUpRecords(); len(records) > 0 {
		leaks = append(leaks, fmt.Sprintf("attachment records: %v", records))
	}
	if procs, _ := framework.PluginProcs(n.binDir); len(procs) > 0 {
		leaks = append(leaks, fmt.Sprintf("plugin processes: %v", procs))
	}
	for _, l := range leaks {
		n.Errorf("round %d: left behind: %s", round, l)
	}
	return len(leaks)
}

// callOutcome is how a CRI call ended, and when.
type callOutcome struct {
	id  string
	err error
	at  time.Time
}

// runPods sends the RunPodSandbox calls of all the round's pods at once over the clients;
// returned counts the calls ended; wait waits for them all to end and returns their outcomes.
func (n *crashNode) runPods(ctx context.Context, round int, conns []runtimeapi.RuntimeServiceClient) (callStart time.Time, returned *atomic.Int64, wait func() []callOutcome) {
	return n.runPodRange(ctx, round, 0, n.pods, conns)
}

// runPodRange is runPods for the round's pods first to first+count-1 alone; the outcomes are
// in that order.
func (n *crashNode) runPodRange(ctx context.Context, round, first, count int, conns []runtimeapi.RuntimeServiceClient) (callStart time.Time, returned *atomic.Int64, wait func() []callOutcome) {
	outcomes := make([]callOutcome, count)
	var wg sync.WaitGroup
	returned = new(atomic.Int64)
	callStart = time.Now()
	for k := range count {
		i := first + k
		wg.Go(func() {
			resp, err := conns[i%len(conns)].RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: n.podConfig(round, i)})
			outcomes[k] = callOutcome{id: resp.GetPodSandboxId(), err: err, at: time.Now()}
			returned.Add(1)
		})
	}
	return callStart, returned, func() []callOutcome {
		wg.Wait()
		return outcomes
	}
}

// setUpStorm sends all pods' RunPodSandbox calls at once and kills the server plan.delay after
// it wrote its first sandbox record, its first set-up under way (in a recovery round: its last
// record, every set-up under way, unless some call ended without one). It returns when the
// server died, and that the sandboxes answered before that must be ready after the restart.
func (n *crashNode) setUpStorm(ctx context.Context, round int, plan roundPlan, conns []runtimeapi.RuntimeServiceClient, rs *roundStats) (time.Time, expectation) {
	callStart, returned, wait := n.runPods(ctx, round, conns)
	need := 1
	if plan.kind == killRecovery {
		need = n.pods
	}
	for {
		records, _ := n.recordedIDs()
		if len(records) >= need || returned.Load() == int64(n.pods) {
			break
		}
		if err := framework.Pause(ctx, time.Millisecond); err != nil {
			n.Fatalf("round %d: no set-up reached the server: %v", round, err)
		}
	}
	recordAt := time.Now()
	if err := framework.Pause(ctx, plan.delay); err != nil {
		n.t.Fatal(err)
	}
	killAt := n.killCounting(ctx, round, plan.group, &rs.midChain, &rs.orphans)
	rs.delay = killAt.Sub(recordAt)
	rs.sinceCalls = killAt.Sub(callStart)

	var want expectation
	for i, o := range wait() {
		switch {
		case o.err == nil:
			want.ready = append(want.ready, o.id)
		case o.at.Before(killAt):
			rs.refused++
			n.Errorf("round %d: pod %d failed before the kill: %v", round, i, o.err)
		}
	}
	rs.succeeded = len(want.ready)
	n.addIDs(want.ready...)
	return killAt, want
}

// teardownStorm sets all pods up, with no kill, then has the clients tear three in four of them
// down at once, as the kubelet does when pods are deleted: half of those with StopPodSandbox
// then RemovePodSandbox, the other half with RemovePodSandbox alone (which stops first). The
// fourth pod of each four is a bystander, left alone. The server is killed plan.delay after
// the teardown calls went out. It returns when the server died, and what the restarted server
// must show of each sandbox.
func (n *crashNode) teardownStorm(ctx context.Context, round int, plan roundPlan, conns []runtimeapi.RuntimeServiceClient, rs *roundStats) (time.Time, expectation) {
	_, _, wait := n.runPods(ctx, round, conns)
	ids := make([]string, n.pods)
	for i, o := range wait() {
		if o.err != nil {
			n.Errorf("round %d: pod %d: set-up, with no kill, failed: %v", round, i, o.err)
			continue
		}
		ids[i] = o.id
		n.addIDs(o.id)
		rs.succeeded++
	}

	type teardown struct{ stop, remove *callOutcome }
	calls := make([]teardown, n.pods)
	var wg sync.WaitGroup
	want := expectation{cutOff: map[string]bool{}}
	callStart := time.Now()
	for i, id := range ids {
		if id == "" {
			continue
		}
		if i%4 == 3 {
			want.ready = append(want.ready, id)
			continue
		}
		wg.Go(func() {
			c := conns[i%len(conns)]
			if i%4 != 1 {
				_, err := c.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
				calls[i].stop = &callOutcome{id: id, err: err, at: time.Now()}
				if err != nil {
					return
				}
			}
			_, err := c.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			calls[i].remove = &callOutcome{id: id, err: err, at: time.Now()}
		})
	}
	rs.bystanders = len(want.ready)
	if err := framework.Pause(ctx, plan.delay); err != nil {
		n.t.Fatal(err)
	}
	killAt := n.killCounting(ctx, round, plan.group, &rs.midChain, &rs.orphans)
	rs.delay = killAt.Sub(callStart)
	wg.Wait()

	for i, c := range calls {
		for _, o := range []*callOutcome{c.stop, c.remove} {
			if o != nil && o.err != nil && o.at.Before(killAt) {
				rs.refused++
				n.Errorf("round %d: pod %d (%s): teardown failed before the kill: %v", round, i, o.id, o.err)
			}
		}
		if c.stop != nil && c.stop.err == nil {
			rs.stopsAnswered++
		}
		switch {
		case c.remove != nil && c.remove.err == nil:
			rs.removesAnswered++
			want.removed = append(want.removed, c.remove.id)
		case c.stop != nil && c.stop.err == nil:
			want.stopped = append(want.stopped, c.stop.id)
		case ids[i] != "" && i%4 != 3:
			want.cutOff[ids[i]] = true
		}
	}
	return killAt, want
}

// killCounting kills the server as planned and returns when. It adds to chains the plugin
// processes running an ADD or a DEL just before the kill (the chains it cut off mid-way; a
// STATUS or GC probe is no chain) and to orphans the plugin processes
// still running right after, and waits for the orphans to exit, as a service manager
// restarting the unit would after its stop timeout, so that the next start's recovery sees
// everything they did.
func (n *crashNode) killCounting(ctx context.Context, round int, group bool, chains, orphans *int) time.Time {
	n.t.Helper()
	running := chainProcs(n.binDir)
	*chains += running["ADD"] + running["DEL"]
	killAt := time.Now()
	n.kill(group)
	left, err := framework.WaitPluginProcs(ctx, n.binDir)
	if err != nil {
		n.Fatalf("round %d: %v", round, err)
	}
	*orphans += left
	return killAt
}

// killRecovery starts the server again and kills it while its recovery rolls back the set-ups
// the first kill cut off, before the server listens: once the recovery has rolled back
// plan.recoveredShare of them, or at its first DEL for a share that comes to none (the STATUS
// probe at start runs plugins too, so DELs are what tell the recovery under way). A server
// already listening by then (its recovery was over) is killed all the same, and counted.
func (n *crashNode) killRecovery(ctx context.Context, round int, plan roundPlan, rs *roundStats) {
	n.t.Helper()
	before := n.recordStates()
	for _, st := range before {
		if st == "creating" {
			rs.toRecover++
		}
	}
	rolledBack := func() int {
		k := 0
		for id, st := range n.recordStates() {
			if st == "notready" && before[id] == "creating" {
				k++
			}
		}
		return k
	}
	target := int(plan.recoveredShare * float64(rs.toRecover))
	launchAt := time.Now()
	n.Launch(plan.flags()...)
	for {
		if target == 0 && chainProcs(n.binDir)["DEL"] > 0 || target > 0 && rolledBack() >= target {
			break
		}
		if n.Answers() {
			rs.recoveryMissed++
			break
		}
		if n.Exited() {
			n.Fatalf("round %d: cnishim serve exited at start\n%s", round, n.LogTail(1))
		}
		if err := framework.Pause(ctx, 2*time.Millisecond); err != nil {
			n.Fatalf("round %d: the recovery did not get under way: %v", round, err)
		}
	}
	killAt := n.killCounting(ctx, round, plan.group, &rs.recoveryChains, &rs.recoveryOrphans)
	rs.recoveryDelay = killAt.Sub(launchAt)
	rs.recoveredAtKill = rolledBack()
}

// checkRestart checks what the restarted server lists, and what the host holds, against what
// the callers were answered before the kill, and returns the IDs listed.
func (n *crashNode) checkRestart(ctx context.Context, round int, want expectation, rs *roundStats) []string {
	pods, err := n.ListPods(ctx)
	if err != nil {
		n.Fatalf("round %d: %v", round, err)
	}
	rs.listed = len(pods)
	state := map[string]string{}
	ids := make([]string, 0, len(pods))
	var ready []string
	for _, p := range pods {
		state[p.ID] = p.State
		ids = append(ids, p.ID)
		if p.State == "SANDBOX_READY" {
			ready = append(ready, p.ID)
		}
	}
	rs.ready = len(ready)
	n.addIDs(ids...)
	for _, id := range want.ready {
		if state[id] != "SANDBOX_READY" {
			n.Errorf("round %d: sandbox %s was ready before the kill, and not torn down, but is not listed ready after the restart", round, id)
		}
	}
	for _, id := range want.stopped {
		if state[id] == "SANDBOX_READY" {
			n.Errorf("round %d: sandbox %s was stopped before the kill but is listed ready after the restart", round, id)
		}
	}
	for _, id := range want.removed {
		if s, ok := state[id]; ok {
			n.Errorf("round %d: sandbox %s was removed before the kill but is listed %s after the restart", round, id, s)
		}
	}

	st := leakcheck.Take(n.scope())
	if rs.group {
		rs.emptyReservations = framework.RemoveEmptyReservations(n.T, n.ipamDir, st)
		st = leakcheck.Take(n.scope())
	}
	// Each ready sandbox holds its IP (the one its status reports, reserved in host-local and
	// carried by eth0 in its netns), its netns, its cache entry and its portmap rules, unless a
	// teardown of it was cut off; nothing is held for a sandbox not ready.
	held := n.heldBy(st)
	conn, rt := n.Dial()
	defer conn.Close()
	for _, id := range ready {
		resp, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		if err != nil {
			n.Errorf("round %d: status of sandbox %s: %v", round, id, err)
			continue
		}
		ip := resp.GetStatus().GetNetwork().GetIp()
		h := held[id]
		eth0 := errors.New("no netns")
		if h.netns {
			eth0 = n.hasIP(id, ip)
		}
		rule := slices.ContainsFunc(st.Rules, func(l string) bool { return strings.Contains(l, id) })
		switch {
		case ip != "" && slices.Contains(h.ips, ip) && h.netns && h.cache && eth0 == nil && rule:
			rs.intact++
		case want.cutOff[id]:
			// A stop records the sandbox "stopping" before its first DEL, and the recovery
			// finishes it: a cut-off teardown leaves it intact, stopped or gone, never
			// listed ready with part of its network released.
			rs.halfTorn++
			n.Errorf("round %d: sandbox %s, whose teardown the kill cut off, is listed ready with its network partly torn down: status IP %q, host-local holds %v for it, netns mounted %v, cache entry %v, eth0: %v, portmap rule %v",
				round, id, ip, h.ips, h.netns, h.cache, eth0, rule)
		default:
			n.Errorf("round %d: sandbox %s is listed ready but its network is not intact: status IP %q, host-local holds %v for it, netns mounted %v, cache entry %v, eth0: %v, portmap rule %v",
				round, id, ip, h.ips, h.netns, h.cache, eth0, rule)
		}
	}
	for id, h := range held {
		if state[id] != "SANDBOX_READY" {
			n.Errorf("round %d: after the restart the host holds %+v for sandbox %q, listed %q", round, h, id, state[id])
		}
	}
	n.mu.Lock()
	seen := slices.Collect(maps.Keys(n.ids))
	n.mu.Unlock()
	for _, id := range seen {
		if state[id] == "SANDBOX_READY" {
			continue
		}
		for _, l := range st.Rules {
			if strings.Contains(l, id) {
				n.Errorf("round %d: after the restart a rule names sandbox %s, listed %q: %s", round, id, state[id], l)
			}
		}
	}
	// With no teardown cut off half-way, the counts match exactly, veths too.
	if rs.halfTorn == 0 && (len(st.IPs) != len(ready) || len(st.Cache) != len(ready) || len(st.Netns) != len(ready) || len(st.Veths) != len(ready)) {
		n.Errorf("round %d: after the restart, %d ready sandboxes hold %d IPs, %d cache entries, %d netns mounts, %d veths; want %d of each",
			round, len(ready), len(st.IPs), len(st.Cache), len(st.Netns), len(st.Veths), len(ready))
	}
	return ids
}

// hasIP returns nil if eth0 in the sandbox's namespace carries ip, an error saying what is
// wrong otherwise.
func (n *crashNode) hasIP(id, ip string) error {
	return netns.Do(filepath.Join(n.StateDir, "netns", id), func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("eth0: %w", err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("eth0 addresses: %w", err)
		}
		for _, a := range addrs {
			if a.IP.String() == ip {
				return nil
			}
		}
		return fmt.Errorf("eth0 carries %v, not %s", addrs, ip)
	})
}

// held is what the host holds for one sandbox.
type held struct {
	ips   []string // host-local reservations naming it
	netns bool     // its namespace is mounted
	cache bool     // libcni holds a cached result for it
}

// heldBy sorts what st found by the sandbox it belongs to: host-local reservations by the
// owner written in them, libcni cache entries by their name (<network>-<sandbox>-<ifname>),
// netns mounts by their file name.
func (n *crashNode) heldBy(st leakcheck.State) map[string]held {
	out := map[string]held{}
	for _, r := range st.IPs {
		owner, _, _ := strings.Cut(st.IPOwners[r], " ")
		h := out[owner]
		h.ips = append(h.ips, filepath.Base(r))
		out[owner] = h
	}
	for _, c := range st.Cache {
		id := strings.TrimSuffix(strings.TrimPrefix(c, n.netName+"-"), "-eth0")
		h := out[id]
		h.cache = true
		out[id] = h
	}
	for _, p := range st.Netns {
		id := filepath.Base(p)
		h := out[id]
		h.netns = true
		out[id] = h
	}
	return out
}

// recordStates returns the state ("creating", "ready", "notready") of every sandbox record
// in the server's state dir.
func (n *crashNode) recordStates() map[string]string {
	out := map[string]string{}
	records, _ := n.recordedIDs()
	for _, id := range records {
		data, err := os.ReadFile(filepath.Join(n.StateDir, "sandboxes", id+".json"))
		if err != nil {
			continue
		}
		var rec struct {
			State string `json:"state"`
		}
		if json.Unmarshal(data, &rec) == nil {
			out[id] = rec.State
		}
	}
	return out
}

// setUpRecords lists the network plugin's records of attachments it made (one per sandbox
// whose network is attached, being set up, or was cut off). This is the one place the test
// knows where they live: in the server's state dir, under network/.
func (n *crashNode) setUpRecords() []string {
	entries, _ := os.ReadDir(filepath.Join(n.StateDir, "network"))
	var out []string
	for _, e := range entries {
		// A temporary file of a write cut off by a kill is the plugin's to remove once it
		// is a minute old; it records nothing.
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// chainProcs counts the plugin processes from binDir by the CNI command they run.
func chainProcs(binDir string) map[string]int {
	out := map[string]int{}
	procs, _ := framework.PluginProcs(binDir)
	for _, p := range procs {
		pid, _, _ := strings.Cut(p, " ")
		environ, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		if err != nil {
			continue // gone
		}
		for _, kv := range strings.Split(string(environ), "\x00") {
			if cmd, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
				out[cmd]++
				break
			}
		}
	}
	return out
}
