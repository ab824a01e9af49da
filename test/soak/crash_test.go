//go:build linux

package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/leakcheck"
	"github.com/cnishim/cnishim/internal/netns"
)

// Crash test sizes: the figures, and the CRI clients that share the calls.
const (
	defaultCrashRounds = 10
	defaultCrashPods   = 200
	crashClients       = 16
	maxCrashPods       = 1000 // the subnet is a /22 and the host ports a block of 1,500
	containerPort      = 8080
)

// crashNode is the crash test's piece of a node: a `cnishim serve` over dirs of its own, with a
// bin dir of plugin copies, and a bridge + host-local + portmap network on a bridge, a subnet
// and a block of host ports no other test uses.
type crashNode struct {
	t        *testing.T
	dir      string
	sock     string
	confDir  string
	cacheDir string
	stateDir string
	binDir   string
	ipamDir  string
	netName  string
	bridge   string
	subnet   string
	portBase int
	pods     int

	mu   sync.Mutex // guards the fields below
	cmd  *exec.Cmd
	done chan struct{}
	logs []string        // log file of each server started
	ids  map[string]bool // every sandbox ID the test saw: returned, recorded or listed
	// failures repeats every failure message, for the summary that ends a failed test's
	// output after the server logs (a CI excerpt shows the end of the output).
	failures []string

	before leakcheck.State // what the scope held before the first server started
}

func newCrashNode(t *testing.T, pods int) *crashNode {
	t.Helper()
	k := slot(8)
	dir := t.TempDir()
	n := &crashNode{
		t:        t,
		dir:      dir,
		sock:     filepath.Join(dir, "cri.sock"),
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cache"),
		stateDir: filepath.Join(dir, "state"),
		binDir:   filepath.Join(dir, "bin"),
		ipamDir:  filepath.Join(dir, "ipam"),
		netName:  "soak-crash",
		bridge:   fmt.Sprintf("cnisoakc%d", k),
		subnet:   fmt.Sprintf("10.88.%d.0/22", 4*k), // inside 10.88.0.0/19, only on these bridges
		portBase: 20000 + 1500*k,
		pods:     pods,
		ids:      map[string]bool{},
	}
	checkNoBridge(t, n.bridge)
	copyPlugins(t, n.binDir, requiredPlugins...)
	if err := os.MkdirAll(n.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.confDir, "10-soak.conflist"), []byte(n.conflist()), 0o644); err != nil {
		t.Fatal(err)
	}
	// A crictl config of the test's own, so crictl reads nothing global.
	cf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\ndebug: false\n", n.sock, n.sock)
	if err := os.WriteFile(filepath.Join(dir, "crictl.yaml"), []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteBridge(t, n.bridge) })
	t.Cleanup(n.cleanUp)
	return n
}

// conflist is the network: CNI 1.1.0, so that GC reaches the plugins as well.
func (n *crashNode) conflist() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.1.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.netName, n.bridge, n.ipamDir, n.subnet)
}

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
		CacheDir:      n.cacheDir,
		NetnsDir:      filepath.Join(n.stateDir, "netns"),
		Bridges:       []string{n.bridge},
		RuleNeedles:   needles,
	}
}

// errorf fails the test with a message that also goes into the closing summary.
func (n *crashNode) errorf(format string, args ...any) {
	n.t.Helper()
	n.record(fmt.Sprintf(format, args...))
	n.t.Errorf(format, args...)
}

// fatalf is errorf that stops the test.
func (n *crashNode) fatalf(format string, args ...any) {
	n.t.Helper()
	n.record(fmt.Sprintf(format, args...))
	n.t.Fatalf(format, args...)
}

func (n *crashNode) record(msg string) {
	// The first line is enough for the summary; the full message is above it.
	first, _, _ := strings.Cut(msg, "\n")
	n.mu.Lock()
	n.failures = append(n.failures, first)
	n.mu.Unlock()
}

func (n *crashNode) addIDs(ids ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range ids {
		n.ids[id] = true
	}
}

// start starts `cnishim serve` and waits until it answers, which it does only after its
// recovery and start-up GC. The server leads a process group of its own, with the plugins it
// runs, so that kill can take them down together.
func (n *crashNode) start(extraFlags ...string) {
	n.t.Helper()
	logf, err := os.CreateTemp(n.dir, "serve-*.log")
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(env.cnishim, "serve",
		"--listen", "unix://"+n.sock,
		"--state-dir", n.stateDir,
		"--cni-conf-dir", n.confDir,
		"--cni-bin-dir", n.binDir,
		"--cni-cache-dir", n.cacheDir,
		"--operation-timeout", "2m",
		"--shutdown-grace", "1m",
		"-v", "2",
	)
	cmd.Args = append(cmd.Args, extraFlags...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	_ = logf.Close()
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.logs = append(n.logs, logf.Name())
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	conn, rt := n.dial()
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(n.t.Context()), 5*time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := rt.Version(cctx, &runtimeapi.VersionRequest{})
		ccancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			n.fatalf("cnishim serve exited at start: %v\n%s", cmd.ProcessState, n.logTail(1))
		case <-ctx.Done():
			n.fatalf("cnishim serve did not answer on %s: %v\n%s", n.sock, err, n.logTail(1))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *crashNode) dial() (*grpc.ClientConn, runtimeapi.RuntimeServiceClient) {
	n.t.Helper()
	conn, err := grpc.NewClient("unix://"+n.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.t.Fatal(err)
	}
	return conn, runtimeapi.NewRuntimeServiceClient(conn)
}

// kill sends SIGKILL to the server alone (a runtime unit with KillMode=process, whose plugin
// children live on as orphans) or to its whole process group (KillMode=control-group: the
// plugins die mid-operation too), and waits for the server to be gone.
func (n *crashNode) kill(group bool) {
	n.t.Helper()
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		n.t.Fatal("no server running")
	}
	pid := cmd.Process.Pid
	if group {
		pid = -pid
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		n.fatalf("kill %d: %v", pid, err)
	}
	<-done
}

// stop stops a running server with SIGTERM and checks that it exits 0.
func (n *crashNode) stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if !cmd.ProcessState.Success() {
			n.errorf("cnishim serve exited with %v after SIGTERM\n%s", cmd.ProcessState, n.logTail(1))
		}
	case <-time.After(2 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		n.t.Error("cnishim serve did not stop within 2 minutes of SIGTERM")
	}
}

// logTail returns the last lines of the logs of the last k servers started.
func (n *crashNode) logTail(k int) string {
	n.mu.Lock()
	logs := slices.Clone(n.logs)
	n.mu.Unlock()
	var b strings.Builder
	for _, l := range logs[max(0, len(logs)-k):] {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", filepath.Base(l), min(len(lines), 60), strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	return b.String()
}

// raced reports the servers whose log holds a race detector report.
func (n *crashNode) raced() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, l := range n.logs {
		if data, _ := os.ReadFile(l); bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			out = append(out, l)
		}
	}
	return out
}

// crictl runs crictl against the server and returns its stdout; an error carries stderr.
func (n *crashNode) crictl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--runtime-endpoint", "unix://" + n.sock, "--image-endpoint", "unix://" + n.sock, "--timeout", "2m"}, args...)
	cmd := exec.CommandContext(ctx, env.crictl, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + n.dir, "CRI_CONFIG_FILE=" + filepath.Join(n.dir, "crictl.yaml")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args[:min(len(args), 2)], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// listedPod is one sandbox of `crictl pods -o json`.
type listedPod struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (n *crashNode) listPods(ctx context.Context) ([]listedPod, error) {
	out, err := n.crictl(ctx, "pods", "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []listedPod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("crictl pods -o json: %w\n%s", err, out)
	}
	return l.Items, nil
}

// crictlEach runs `crictl <verb> <ids...>` over the IDs, in a few crictl processes at once (as
// many kubelet workers would), and returns how many IDs were done and the errors.
func (n *crashNode) crictlEach(ctx context.Context, verb string, ids []string) (int, error) {
	const procs = 4
	chunk := max(1, (len(ids)+procs-1)/procs)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
		errs []error
	)
	for part := range slices.Chunk(ids, chunk) {
		wg.Go(func() {
			_, err := n.crictl(ctx, append([]string{verb}, part...)...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			done += len(part)
		})
	}
	wg.Wait()
	return done, errors.Join(errs...)
}

// recordedIDs returns the sandbox IDs the server's state dir names: records and namespaces.
func (n *crashNode) recordedIDs() (records, all []string) {
	seen := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(n.stateDir, "sandboxes"))
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			records = append(records, id)
			seen[id] = true
		}
	}
	entries, _ = os.ReadDir(filepath.Join(n.stateDir, "netns"))
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
	n.mu.Lock()
	running := n.cmd != nil
	n.mu.Unlock()
	if records, _ := n.recordedIDs(); !running && len(records) > 0 {
		n.start()
		running = true
	}
	if running {
		if pods, err := n.listPods(ctx); err != nil {
			n.errorf("list pods at cleanup: %v", err)
		} else if len(pods) > 0 {
			ids := make([]string, len(pods))
			for i, p := range pods {
				ids[i] = p.ID
			}
			if !t.Failed() {
				n.errorf("the test left %d sandboxes", len(ids))
			}
			if _, err := n.crictlEach(ctx, "rmp", append([]string{"-f"}, ids...)); err != nil {
				n.errorf("remove leftover sandboxes: %v", err)
			}
		}
		n.stop()
	}
	if t.Failed() {
		n.scrub(ctx)
	}
	mounted, _ := netns.Mounted(filepath.Join(n.stateDir, "netns"))
	for _, p := range mounted {
		if err := netns.Remove(p); err != nil {
			n.errorf("remove netns %s: %v", p, err)
		}
	}
	for _, l := range n.raced() {
		n.errorf("cnishim serve reported a data race: see %s\n%s", l, n.logTail(len(n.logs)))
	}
	if t.Failed() {
		t.Logf("server logs:\n%s", n.logTail(3))
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
	cni := libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, n.cacheDir, nil)
	list, err := libcni.ConfListFromBytes([]byte(n.conflist()))
	if err != nil {
		n.errorf("scrub: %v", err)
		return
	}
	for id := range held {
		rt := &libcni.RuntimeConf{ContainerID: id, IfName: "eth0", CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": n.portBase, "containerPort": containerPort, "protocol": "tcp"}},
		}}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			n.errorf("scrub sandbox %s: %v", id, err)
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

// roundStats is what one kill round counted.
type roundStats struct {
	round      int
	delay      time.Duration // from the first record the server wrote to the kill
	sinceCalls time.Duration // from the first call to the kill
	group      bool          // the kill took the plugins' process group too
	parallel   int           // the server's bound on set-ups run at once; 0: its default
	started    int           // RunPodSandbox calls in flight
	succeeded  int           // calls answered with a sandbox ID before the kill
	refused    int           // calls failed before the kill (must be 0)
	records    int           // sandbox records on disk right after the kill
	midChain   int           // plugin processes running just before the kill
	orphans    int           // plugin processes still running right after the kill
	listed     int           // sandboxes crictl listed after the restart
	ready      int           // of which SANDBOX_READY
	stopped    int           // sandboxes crictl stopp stopped
	removed    int           // sandboxes crictl rmp removed
	leaks      int           // things left behind after the cleanup (must be 0)
	// emptyReservations are host-local reservation files with no owner written, found after a
	// process-group kill: host-local was killed between creating the file and writing it.
	// No CNI operation can release such a file; the test counts and removes them.
	emptyReservations int

	restart  time.Duration // from the kill until the restarted server answered (its recovery)
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
	return fmt.Sprintf("round %d: kill (%s, parallel set-ups %s) %v after the first record (%v after the first call): started %d, succeeded before kill %d, failed before kill %d, "+
		"records at kill %d, plugins running at kill %d, orphan plugins %d, found after restart %d (%d ready), stopped %d, removed %d, leaks %d, "+
		"empty host-local reservations %d; restart took %v, teardown %v, round %v",
		r.round, mode, parallel, r.delay.Round(time.Millisecond), r.sinceCalls.Round(time.Millisecond), r.started, r.succeeded, r.refused, r.records, r.midChain, r.orphans,
		r.listed, r.ready, r.stopped, r.removed, r.leaks, r.emptyReservations,
		r.restart.Round(time.Millisecond), r.teardown.Round(time.Millisecond), r.took.Round(time.Millisecond))
}

// The runtime is killed with SIGKILL while 200 pod sandboxes are being set up by 16 CRI
// clients at once, at a different point in each of 10 rounds, and restarted. Every sandbox that
// was answered before the kill is still ready after the restart, with its IP; everything else
// the cut-off set-ups made has been released by the restart's recovery; and once crictl has
// stopped and removed every sandbox it lists and a GC pass has run, nothing is left: no IP in
// the host-local store, no veth on the bridge, no netns mount, no libcni cache entry, no
// portmap rule for any sandbox or host port of the test.
func TestCrashRestart(t *testing.T) {
	rounds := envInt(t, "CNISHIM_SOAK_ROUNDS", defaultCrashRounds)
	pods := envInt(t, "CNISHIM_SOAK_PODS", defaultCrashPods)
	if pods > maxCrashPods {
		t.Fatalf("CNISHIM_SOAK_PODS=%d: at most %d", pods, maxCrashPods)
	}
	seed := runSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x50a6))
	n := newCrashNode(t, pods)
	n.before = leakcheck.Take(n.scope())

	// Kill points: round r's delay, counted from the moment the first set-up reaches the
	// server, is drawn from the r-th of `rounds` equal slices of [0, maxDelay), and the rounds
	// run in a random order, so early kills land among the records and namespaces being
	// created and later ones among set-ups in every phase. Kills alternate between the server
	// alone and its process group; the server alternates between its default bound on
	// set-ups run at once (the CPU count) and 16, so that many plugin chains are cut off
	// mid-way in some rounds.
	maxDelay := 6 * time.Second
	order := rng.Perm(rounds)
	plans := make([]roundPlan, rounds)
	for r := range plans {
		slice := maxDelay / time.Duration(rounds)
		plans[r] = roundPlan{
			delay:    time.Duration(order[r])*slice + time.Duration(rng.Int64N(int64(slice))),
			group:    r%2 == 1,
			parallel: []int{0, 16}[r/2%2],
		}
	}
	n.start(plans[0].flags()...)
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
		n.errorf("left behind after all rounds: %s", l)
	}
	var sum roundStats
	for _, r := range all {
		sum.started += r.started
		sum.succeeded += r.succeeded
		sum.refused += r.refused
		sum.records += r.records
		sum.orphans += r.orphans
		sum.midChain += r.midChain
		sum.listed += r.listed
		sum.ready += r.ready
		sum.stopped += r.stopped
		sum.removed += r.removed
		sum.leaks += r.leaks
		sum.emptyReservations += r.emptyReservations
	}
	n.mu.Lock()
	seen := len(n.ids)
	n.mu.Unlock()
	t.Logf("SUMMARY crash/restart: %d kills in %v (seed %d): %d RunPodSandbox calls started, %d succeeded before a kill, "+
		"%d failed before a kill, %d sandbox records at kills, %d plugin processes running at kills, %d orphan plugin processes, "+
		"%d sandboxes found after restarts "+
		"(%d ready), %d stopped and %d removed with crictl, %d sandbox IDs checked for rules, %d leaks, "+
		"%d empty host-local reservations after process-group kills",
		len(all), time.Since(start).Round(time.Second), seed, sum.started, sum.succeeded, sum.refused, sum.records, sum.midChain, sum.orphans,
		sum.listed, sum.ready, sum.stopped, sum.removed, seen, sum.leaks+len(leaks), sum.emptyReservations)
	if len(all) != rounds {
		n.fatalf("ran %d of %d rounds", len(all), rounds)
	}
}

// removeEmptyReservations removes, and counts, the host-local reservations in st that name no
// owner. host-local creates a reservation file and then writes the container ID and interface
// into it, so a process-group kill landing between the two leaves a file no DEL or GC can match
// to a sandbox: host-local's own crash window, outside what any runtime can release through CNI.
// A reservation that names an owner is left for the leak check.
func (n *crashNode) removeEmptyReservations(round int, st leakcheck.State) int {
	removed := 0
	for _, ip := range st.IPs {
		if st.IPOwners[ip] != "" {
			continue
		}
		n.t.Logf("round %d: host-local reservation %s is empty: host-local was killed between creating and writing it; removing it", round, ip)
		if err := os.Remove(filepath.Join(n.ipamDir, ip)); err != nil {
			n.errorf("round %d: %v", round, err)
			continue
		}
		removed++
	}
	return removed
}

// roundPlan is how one round kills the server.
type roundPlan struct {
	delay    time.Duration // from the first set-up reaching the server to the kill
	group    bool          // kill the server's process group, not the server alone
	parallel int           // the server's --max-parallel-setups; 0: its default
}

// flags are the server flags of a round.
func (p roundPlan) flags() []string {
	if p.parallel == 0 {
		return nil
	}
	return []string{"--max-parallel-setups", strconv.Itoa(p.parallel)}
}

// crashRound runs one round: all pods' RunPodSandbox calls at once, a kill as planned, a
// restart (with the next round's flags), the checks of what the restart kept and released,
// then crictl stopp and rmp of everything listed, a GC pass, and the leak check.
func (n *crashNode) crashRound(round int, plan, next roundPlan) roundStats {
	t := n.t
	t.Helper()
	rs := roundStats{round: round, group: plan.group, parallel: plan.parallel, started: n.pods}
	roundStart := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	// Sixteen clients, each a connection of its own, share the calls; all are in flight at once.
	conns := make([]runtimeapi.RuntimeServiceClient, crashClients)
	for i := range conns {
		conn, rt := n.dial()
		defer conn.Close()
		conns[i] = rt
	}
	type outcome struct {
		id  string
		err error
		at  time.Time
	}
	outcomes := make([]outcome, n.pods)
	var wg sync.WaitGroup
	callStart := time.Now()
	for i := range n.pods {
		wg.Go(func() {
			resp, err := conns[i%crashClients].RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: n.podConfig(round, i)})
			outcomes[i] = outcome{id: resp.GetPodSandboxId(), err: err, at: time.Now()}
		})
	}
	// The delay counts from the first record the server writes: its first set-up under way.
	recordDir := filepath.Join(n.stateDir, "sandboxes")
	for {
		if entries, _ := os.ReadDir(recordDir); len(entries) > 0 {
			break
		}
		if err := pause(ctx, time.Millisecond); err != nil {
			n.fatalf("round %d: no set-up reached the server: %v", round, err)
		}
	}
	firstAt := time.Now()
	if err := pause(ctx, plan.delay); err != nil {
		t.Fatal(err)
	}
	// The plugins running now are the set-ups the kill cuts off mid-chain.
	if procs, err := pluginProcs(n.binDir); err == nil {
		rs.midChain = len(procs)
	}
	killAt := time.Now()
	n.kill(plan.group)
	rs.delay = killAt.Sub(firstAt)
	rs.sinceCalls = killAt.Sub(callStart)
	// Plugins the server started may still be running (with a server-only kill). Let them
	// finish before the restart, as a service manager restarting the unit would after its
	// stop timeout, so that the restart's recovery sees everything they did.
	orphans, err := waitPluginProcs(ctx, n.binDir)
	if err != nil {
		n.fatalf("round %d: %v", round, err)
	}
	rs.orphans = orphans
	wg.Wait()

	var succeeded []string
	for i, o := range outcomes {
		switch {
		case o.err == nil:
			succeeded = append(succeeded, o.id)
		case o.at.Before(killAt):
			rs.refused++
			n.errorf("round %d: pod %d failed before the kill: %v", round, i, o.err)
		}
	}
	rs.succeeded = len(succeeded)
	n.addIDs(succeeded...)
	recs, recorded := n.recordedIDs()
	rs.records = len(recs)
	n.addIDs(recorded...)

	n.start(next.flags()...)
	rs.restart = time.Since(killAt)
	pods, err := n.listPods(ctx)
	if err != nil {
		n.fatalf("round %d: %v", round, err)
	}
	rs.listed = len(pods)
	ids := make([]string, 0, len(pods))
	var ready []string
	for _, p := range pods {
		ids = append(ids, p.ID)
		if p.State == "SANDBOX_READY" {
			ready = append(ready, p.ID)
		}
	}
	rs.ready = len(ready)
	n.addIDs(ids...)
	for _, id := range succeeded {
		if !slices.Contains(ready, id) {
			n.errorf("round %d: sandbox %s was set up before the kill but is not listed ready after the restart", round, id)
		}
	}
	// The restart's recovery released everything of the cut-off set-ups and nothing of the
	// ready sandboxes: one IP, one cache entry and one namespace per ready sandbox.
	st := leakcheck.Take(n.scope())
	if plan.group {
		rs.emptyReservations = n.removeEmptyReservations(round, st)
		st = leakcheck.Take(n.scope())
	}
	if len(st.IPs) != len(ready) || len(st.Cache) != len(ready) || len(st.Netns) != len(ready) || len(st.Veths) != len(ready) {
		n.errorf("round %d: after the restart, %d ready sandboxes hold %d IPs, %d cache entries, %d netns mounts, %d veths; want %d of each",
			round, len(ready), len(st.IPs), len(st.Cache), len(st.Netns), len(st.Veths), len(ready))
	}
	// The rule check sees the portmap rules of live sandboxes, so its zero at the end means
	// something.
	if len(ready) > 0 && len(st.Rules) == 0 {
		n.errorf("round %d: no portmap rule found for %d ready sandboxes with host ports", round, len(ready))
	}

	teardownStart := time.Now()
	stopped, err := n.crictlEach(ctx, "stopp", ids)
	if err != nil {
		n.errorf("round %d: crictl stopp: %v", round, err)
	}
	rs.stopped = stopped
	removed, err := n.crictlEach(ctx, "rmp", ids)
	if err != nil {
		n.errorf("round %d: crictl rmp: %v", round, err)
	}
	rs.removed = removed
	if out, err := exec.CommandContext(ctx, env.cnishim, "gc", "--listen", "unix://"+n.sock).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), " 0 valid sandboxes") {
		n.errorf("round %d: cnishim gc: %v: %s", round, err, out)
	}
	rs.teardown = time.Since(teardownStart)

	if left, err := n.listPods(ctx); err != nil || len(left) > 0 {
		n.errorf("round %d: crictl pods after stopp and rmp: %v, %v", round, left, err)
	}
	st = leakcheck.Take(n.scope())
	leaks := leakcheck.Leaks(n.before, st)
	if records, _ := n.recordedIDs(); len(records) > 0 {
		leaks = append(leaks, fmt.Sprintf("sandbox records: %v", records))
	}
	if procs, _ := pluginProcs(n.binDir); len(procs) > 0 {
		leaks = append(leaks, fmt.Sprintf("plugin processes: %v", procs))
	}
	for _, l := range leaks {
		n.errorf("round %d: left behind: %s", round, l)
	}
	rs.leaks = len(leaks)
	rs.took = time.Since(roundStart)
	return rs
}
