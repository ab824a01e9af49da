//go:build linux

// Package reliability proves, against real plugins in real network namespaces, that cnishim
// keeps a node's pod networking intact when plugins misbehave and when its inputs are bad:
// every caller gets a clear error in bounded time, and nothing (IP, veth, netns, cache entry,
// rule, process, goroutine) is left behind. Each test drives both the cninetwork Plugin API and
// a real `cnishim serve` process over its CRI socket.
//
// Prerequisites, all required (the tests fail, never skip, without them): root; the plugins of
// hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN (default <repo>/_output/cni/bin); the
// cnishim binary in $CNISHIM_TEST_CNISHIM (built by TestMain with -race when that is unset).
// The cnitest fault-injection plugin is built by TestMain.
//
// The tests of this package do not run in parallel with each other: they count the test
// process's goroutines and child processes.
package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/leakcheck"
	"github.com/cnishim/cnishim/internal/netns"
	"github.com/cnishim/cnishim/internal/plugintest"
	"github.com/cnishim/cnishim/internal/roottest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// requiredPlugins are the real plugins the tests' networks use.
var requiredPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// env holds the prerequisites TestMain found.
var env struct {
	repo    string
	cniBin  string
	cnishim string
}

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/reliability: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M) (int, error) {
	if err := roottest.RequireMain("test/reliability"); err != nil {
		return 0, err
	}
	_, file, _, _ := runtime.Caller(0)
	env.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	env.cniBin = envOr("CNISHIM_TEST_CNI_BIN", filepath.Join(env.repo, "_output", "cni", "bin"))
	for _, p := range requiredPlugins {
		if _, err := os.Stat(filepath.Join(env.cniBin, p)); err != nil {
			return 0, fmt.Errorf("CNI plugin %q missing in %s (run hack/install-cni-plugins.sh or make deps): %v", p, env.cniBin, err)
		}
	}
	if _, err := plugintest.Build(); err != nil {
		return 0, err
	}
	defer plugintest.Cleanup()
	env.cnishim = os.Getenv("CNISHIM_TEST_CNISHIM")
	if env.cnishim == "" {
		dir, err := os.MkdirTemp("", "cnishim-reliability-bin-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		env.cnishim = filepath.Join(dir, "cnishim")
		build := exec.Command("go", "build", "-race", "-o", env.cnishim, "./cmd/cnishim")
		build.Dir = env.repo
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build ./cmd/cnishim: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(env.cnishim); err != nil {
		return 0, fmt.Errorf("cnishim binary (make build, or unset CNISHIM_TEST_CNISHIM to build it here): %v", err)
	}
	return m.Run(), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var nodeSeq atomic.Int32

// node is one test's private piece of a node: conf, cache, netns and host-local dirs, a bin
// dir for the cnitest plugin, and a bridge and two IPv4 /24s no other test uses (inside
// 10.88.128.0/18, which exists only on these tests' bridges). Its cleanup removes the
// namespaces it made and the bridge.
type node struct {
	t        *testing.T
	dir      string
	confDir  string
	cacheDir string
	nsDir    string
	ipamDir  string
	binDir   string
	bridge   string
	subnets  [2]string

	mu    sync.Mutex
	netns []string
	ids   []string
}

func newNode(t *testing.T) *node {
	t.Helper()
	seq := int(nodeSeq.Add(1))
	k := (os.Getpid()%8)*8 + seq%8 // distinct across the tests of one run
	dir := t.TempDir()
	n := &node{
		t:        t,
		dir:      dir,
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cache"),
		nsDir:    filepath.Join(dir, "netns"),
		ipamDir:  filepath.Join(dir, "ipam"),
		binDir:   filepath.Join(dir, "bin"),
		bridge:   fmt.Sprintf("cnirel%d", k),
		subnets:  [2]string{fmt.Sprintf("10.88.%d.0/24", 128+k), fmt.Sprintf("10.88.%d.0/24", 192+k%64)},
	}
	for _, d := range []string{n.confDir, n.binDir, n.ipamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := netlink.LinkByName(n.bridge); err == nil {
		t.Fatalf("bridge %s already exists: another run of these tests is going on, or one left it behind", n.bridge)
	}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.netns {
			if err := netns.Remove(p); err != nil {
				t.Errorf("remove netns %s: %v", p, err)
			}
		}
		if l, err := netlink.LinkByName(n.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", n.bridge, err)
			}
		}
	})
	return n
}

// scope is where the node's pods can leave something behind, but for rules: host-local
// stores, the cache dir, the namespace dir nsDir (the node's own, or a server's; "" for none)
// and the bridge's veths. Reading the rules runs iptables-save and nft, slow on a busy machine,
// so tests read them once before and once after (ruleScope).
func (n *node) scope(nsDir, cacheDir string) leakcheck.Scope {
	return leakcheck.Scope{
		HostLocalDirs: []string{filepath.Join(n.ipamDir, "bridge"), filepath.Join(n.ipamDir, "faulty")},
		CacheDir:      cacheDir,
		NetnsDir:      nsDir,
		Bridges:       []string{n.bridge},
	}
}

// ruleScope is where portmap rules of the node's sandboxes would be: rules naming any sandbox
// ID the test used.
func (n *node) ruleScope() leakcheck.Scope {
	n.mu.Lock()
	defer n.mu.Unlock()
	return leakcheck.Scope{RuleNeedles: slices.Clone(n.ids)}
}

// addNeedle registers a sandbox ID (or other string) whose presence in a rule is a leak.
func (n *node) addNeedle(s string) {
	n.mu.Lock()
	n.ids = append(n.ids, s)
	n.mu.Unlock()
}

// writeConf writes a config file into the conf dir by rename, so no watcher sees it
// half-written.
func (n *node) writeConf(file, body string) {
	n.t.Helper()
	tmp := filepath.Join(n.confDir, ".tmp-"+file)
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		n.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.confDir, file)); err != nil {
		n.t.Fatal(err)
	}
}

// bridgePlugin is the JSON of a bridge plugin on the node's bridge with host-local IPAM on the
// node's first subnet.
func (n *node) bridgePlugin() string {
	return fmt.Sprintf(`{
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, n.bridge, filepath.Join(n.ipamDir, "bridge"), n.subnets[0])
}

// faultyPlugin is the JSON of the cnitest plugin installed as "faulty", told what to do by the
// behavior file, with host-local IPAM on the node's second subnet (which the plugin delegates
// to when its behavior says so).
func (n *node) faultyPlugin(behaviorFile string) string {
	return fmt.Sprintf(`{
      "type": "faulty", "behavior": %q,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, behaviorFile, filepath.Join(n.ipamDir, "faulty"), n.subnets[1])
}

// conflist returns a network list of the given plugins' JSON.
func conflist(cniVersion, name string, plugins ...string) string {
	return fmt.Sprintf(`{"cniVersion": %q, "name": %q, "plugins": [%s]}`, cniVersion, name, strings.Join(plugins, ",\n"))
}

// installFaulty installs the cnitest plugin into the node's bin dir as "faulty" and returns
// its path.
func (n *node) installFaulty() string {
	n.t.Helper()
	return plugintest.MustInstallAs(n.t, n.binDir, "faulty")[0]
}

// newID returns a fresh 64-hex-digit sandbox ID, registered as a rule needle.
func (n *node) newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n.addNeedle(id)
	return id
}

// pod returns a pod with a fresh network namespace, removed at cleanup.
func (n *node) pod(name string) *cninetwork.Pod {
	n.t.Helper()
	id := n.newID()
	path, err := netns.Create(n.nsDir, id[:16])
	if err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.netns = append(n.netns, path)
	n.mu.Unlock()
	return &cninetwork.Pod{SandboxID: id, Name: name, Namespace: "reliability", UID: "uid-" + id[:8], NetNS: path}
}

// removeNetns removes a pod's namespace before cleanup would.
func (n *node) removeNetns(path string) {
	n.t.Helper()
	if err := netns.Remove(path); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.netns = slices.DeleteFunc(n.netns, func(p string) bool { return p == path })
	n.mu.Unlock()
}

// plugin starts a cninetwork.Plugin on the node, with the real plugins and the node's bin dir,
// and closes it at cleanup.
func (n *node) plugin(timeout time.Duration, opts ...cninetwork.Option) *cninetwork.Plugin {
	n.t.Helper()
	all := append([]cninetwork.Option{
		cninetwork.WithConfDir(n.confDir),
		cninetwork.WithBinDirs(env.cniBin, n.binDir),
		cninetwork.WithCacheDir(n.cacheDir),
		cninetwork.WithOperationTimeout(timeout),
	}, opts...)
	p, err := cninetwork.New(all...)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := p.Run(n.t.Context()); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = p.Close() })
	return p
}

// waitDefault waits until the plugin's default network is name.
func waitDefault(t *testing.T, p *cninetwork.Plugin, name string) {
	t.Helper()
	eventually(t, fmt.Sprintf("default network %q", name), func() string {
		if s := p.Snapshot(); s.Default == nil || s.Default.Name != name {
			return fmt.Sprintf("default is %v (%v)", s.Default, s.Err)
		}
		return ""
	})
}

// settleBound bounds every wait for something to settle; it is never what a test asserts.
const settleBound = 30 * time.Second

// eventually polls cond until it returns "" and fails the test with its last answer if it
// never does within settleBound.
func eventually(t *testing.T, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(settleBound)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never settled: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// callContext returns a context for one call that the test cancels after a generous bound.
// It is a cancel, never a deadline, so an error that wraps context.DeadlineExceeded (or a gRPC
// DeadlineExceeded) can only come from the operation timeout under test, and a hang that is
// never killed fails the test instead of blocking it.
func callContext(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	timer := time.AfterFunc(2*time.Minute, cancel)
	return ctx, func() { timer.Stop(); cancel() }
}

// stableGoroutines measures a goroutine baseline: what count reports once it has read the
// same for several reads in a row, so that goroutines just started (a plugin's background
// loops) are counted and ones still ending are not. It fails the test if the count never holds
// still within settleBound. processGoroutines counts this process's; server.goroutines a
// server's.
func stableGoroutines(t *testing.T, count func() (int, error)) int {
	t.Helper()
	const reads = 10
	deadline := time.Now().Add(settleBound)
	n, same := -1, 0
	for {
		m, err := count()
		if err != nil {
			t.Fatal(err)
		}
		if m == n {
			same++
		} else {
			n, same = m, 1
		}
		if same == reads {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the goroutine count never held still for %d reads (last %d)", reads, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGoroutines counts this process's goroutines, for stableGoroutines.
func processGoroutines() (int, error) { return runtime.NumGoroutine(), nil }

// goroutinesSettle waits until the process runs at most baseline goroutines and fails the test
// with every goroutine's stack if it never does.
func goroutinesSettle(t *testing.T, baseline int) int {
	t.Helper()
	deadline := time.Now().Add(settleBound)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, want at most %d:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procInfo is one process of the process table.
type procInfo struct {
	pid, ppid int
	state     string
	exe       string
	argv0     string
}

func (p procInfo) String() string {
	return fmt.Sprintf("pid %d (ppid %d, state %s, exe %q, argv0 %q)", p.pid, p.ppid, p.state, p.exe, p.argv0)
}

// processes reads the process table from /proc.
func processes() ([]procInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		p := procInfo{pid: pid, state: f[0]}
		p.ppid, _ = strconv.Atoi(f[1])
		p.exe, _ = os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			p.argv0, _, _ = strings.Cut(string(cmdline), "\x00")
		}
		out = append(out, p)
	}
	return out, nil
}

// strayProcesses returns the processes that a test's plugins left: any process running a binary
// from under one of dirs, and any child of the test process or of one of servers (the server
// processes themselves excepted). An empty answer means none.
func strayProcesses(dirs []string, servers ...int) string {
	procs, err := processes()
	if err != nil {
		return err.Error()
	}
	self := os.Getpid()
	var stray []string
	for _, p := range procs {
		if p.pid == self || slices.Contains(servers, p.pid) {
			continue
		}
		under := false
		for _, d := range dirs {
			if strings.HasPrefix(p.exe, d+"/") || strings.HasPrefix(p.argv0, d+"/") {
				under = true
			}
		}
		if under || p.ppid == self || slices.Contains(servers, p.ppid) {
			stray = append(stray, p.String())
		}
	}
	return strings.Join(stray, "; ")
}

// checkNoStrays fails the test if any plugin process is around: a caller's call returns only
// after the plugins it ran have exited and been reaped, so there is nothing to wait for. It
// returns 1 if it found some, for the tests' tallies.
func checkNoStrays(t *testing.T, dirs []string, servers ...int) int {
	t.Helper()
	if s := strayProcesses(dirs, servers...); s != "" {
		t.Errorf("plugin processes left: %s", s)
		return 1
	}
	return 0
}

// checkNoLeaks fails the test if after holds anything before did not.
func checkNoLeaks(t *testing.T, what string, before, after leakcheck.State) int {
	t.Helper()
	leaks := leakcheck.Leaks(before, after)
	for _, l := range leaks {
		t.Errorf("%s: left behind: %s", what, l)
	}
	return len(leaks)
}

// server is one `cnishim serve` process on a node, and a CRI client connected to it.
type server struct {
	t        *testing.T
	dir      string
	sock     string
	stateDir string
	cacheDir string
	metrics  string // URL of /metrics
	logPath  string

	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
}

// serverOpts are how a test starts a server.
type serverOpts struct {
	// timeout is --operation-timeout.
	timeout time.Duration
	// env is added to the server's environment.
	env []string
	// sockDir, if set, is the directory of the socket (default: a new "run" dir in the
	// server's dir, which the server creates).
	sockDir string
	// stateDir, if set, is --state-dir (default: "state" in the server's dir).
	stateDir string
}

// startServer starts cnishim serve on the node's conf dir, the real plugins and the node's bin
// dir, with a cache dir of its own, and waits until it answers on its socket. At cleanup it
// removes any sandbox left, stops the server with SIGTERM (it must exit 0) and fails the test
// if the server's log reports a data race.
func startServer(t *testing.T, n *node, o serverOpts) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:        t,
		dir:      dir,
		sock:     filepath.Join(dir, "run", "cri.sock"),
		stateDir: filepath.Join(dir, "state"),
		cacheDir: filepath.Join(dir, "cache"),
		logPath:  filepath.Join(dir, "serve.log"),
		done:     make(chan struct{}),
	}
	if o.sockDir != "" {
		s.sock = filepath.Join(o.sockDir, "cri.sock")
	}
	if o.stateDir != "" {
		s.stateDir = o.stateDir
	}
	port := freePort(t)
	s.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve",
		"--listen", "unix://" + s.sock,
		"--state-dir", s.stateDir,
		"--cni-conf-dir", n.confDir,
		"--cni-bin-dir", env.cniBin + "," + n.binDir,
		"--cni-cache-dir", s.cacheDir,
		"--operation-timeout", o.timeout.String(),
		"--shutdown-grace", "30s",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port),
		"-v", "2",
	}
	s.cmd = exec.Command(env.cnishim, args...)
	s.cmd.Env = append(os.Environ(), o.env...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = s.cmd.Wait()
		_ = logf.Close()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)

	conn, err := grpc.NewClient("unix://"+s.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.conn, s.rt = conn, runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := s.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-s.done:
			t.Fatalf("cnishim serve exited at start: %v\n%s", s.cmd.ProcessState, s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cnishim serve did not answer on %s: %v\n%s", s.sock, err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// cleanup removes leftover sandboxes and stops the server.
func (s *server) cleanup() {
	t := s.t
	select {
	case <-s.done:
		t.Errorf("cnishim serve exited before the test ended: %v\n%s", s.cmd.ProcessState, s.log())
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if list, err := s.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil {
			t.Errorf("list sandboxes at cleanup: %v", err)
		} else {
			for _, sb := range list.GetItems() {
				if !t.Failed() {
					t.Errorf("the test left sandbox %s", sb.GetId())
				}
				if _, err := s.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
					t.Errorf("remove sandbox %s at cleanup: %v", sb.GetId(), err)
				}
			}
		}
		cancel()
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
			if !s.cmd.ProcessState.Success() {
				t.Errorf("cnishim serve exited with %v after SIGTERM", s.cmd.ProcessState)
			}
		case <-time.After(2 * time.Minute):
			_ = s.cmd.Process.Kill()
			<-s.done
			t.Errorf("cnishim serve did not stop within 2 minutes of SIGTERM")
		}
	}
	_ = s.conn.Close()
	log := s.log()
	if strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("cnishim serve reported a data race:\n%s", log)
	} else if t.Failed() {
		t.Logf("cnishim serve log:\n%s", log)
	}
}

// goroutines returns the server's goroutine count from its metrics.
func (s *server) goroutines() (int, error) {
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metrics, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return 0, errors.New("no go_goroutines in the server's metrics")
}

// goroutinesSettle waits until the server runs at most baseline goroutines.
func (s *server) goroutinesSettle(baseline int) int {
	s.t.Helper()
	var n int
	eventually(s.t, "server goroutines", func() string {
		var err error
		if n, err = s.goroutines(); err != nil {
			return err.Error()
		}
		if n > baseline {
			return fmt.Sprintf("%d goroutines, want at most %d", n, baseline)
		}
		return ""
	})
	return n
}

// sandboxFiles lists the server's sandbox record files.
func (s *server) sandboxFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(s.stateDir, "sandboxes"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// list returns the IDs of the server's sandboxes.
func (s *server) list(ctx context.Context) ([]string, error) {
	resp, err := s.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range resp.GetItems() {
		ids = append(ids, it.GetId())
	}
	slices.Sort(ids)
	return ids, nil
}

// podConfig is a CRI sandbox config for a pod in the "reliability" namespace.
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "reliability", Uid: "uid-" + name},
		Hostname: "h",
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
