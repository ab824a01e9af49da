//go:build linux

// Package e2e drives `cnishim serve` with the real crictl over a real unix socket, with the real
// CNI plugins in real network namespaces. Every test runs its own server on its own socket,
// state, conf, cache and host-local dirs, bridge and subnet, and fails if anything its pods had
// (IPs, libcni cache entries, netns mounts, veths, portmap rules) is left after it.
//
// Prerequisites, all required (the tests fail, never skip, without them): root; the plugins
// of hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN (default <repo>/_output/cni/bin);
// crictl in $CNISHIM_TEST_CRICTL (default <repo>/_output/bin/crictl, from
// hack/install-crictl.sh). The cnishim binary is $CNISHIM_TEST_CNISHIM, or built by TestMain
// with -race when that is unset.
package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/leakcheck"
	"github.com/cnishim/cnishim/internal/roottest"
)

// requiredPlugins are the plugins the tests' networks use.
var requiredPlugins = []string{"bridge", "host-local", "portmap"}

// env holds the prerequisites TestMain found.
var env struct {
	repo    string
	cniBin  string
	crictl  string
	cnishim string
}

// suite collects what every test created, for the check after the suite.
var suite struct {
	mu      sync.Mutex
	needles []string // sandbox IDs and "dport N" of host ports
	bridges []string
}

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/e2e: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M) (int, error) {
	if err := roottest.RequireMain("test/e2e"); err != nil {
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
	env.crictl = envOr("CNISHIM_TEST_CRICTL", filepath.Join(env.repo, "_output", "bin", "crictl"))
	if _, err := os.Stat(env.crictl); err != nil {
		return 0, fmt.Errorf("crictl missing (run hack/install-crictl.sh or make deps): %v", err)
	}
	env.cnishim = os.Getenv("CNISHIM_TEST_CNISHIM")
	if env.cnishim == "" {
		dir, err := os.MkdirTemp("", "cnishim-e2e-bin-")
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
	code := m.Run()
	if code == 0 {
		if leaks := suiteLeaks(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "test/e2e: left behind after the suite:\n  %s\n", strings.Join(leaks, "\n  "))
			code = 1
		}
	}
	return code, nil
}

// suiteLeaks looks, after every test is done, for rules mentioning any sandbox or host port of
// the suite and for any of its bridges.
func suiteLeaks() []string {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	st := leakcheck.Take(leakcheck.Scope{RuleNeedles: suite.needles})
	var out []string
	for _, r := range st.Rules {
		out = append(out, "rule: "+r)
	}
	for _, p := range st.Problems {
		out = append(out, "could not check: "+p)
	}
	for _, b := range suite.bridges {
		if _, err := netlink.LinkByName(b); err == nil {
			out = append(out, "bridge: "+b)
		}
	}
	return out
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var netSeq atomic.Int32

// testNet is a test's own network: a bridge name and an IPv4 /24 no other test or package
// uses (10.99.x.0/24 exists only on these bridges), and a host-local store in a temp dir.
type testNet struct {
	name    string
	bridge  string
	subnet  *net.IPNet
	ipamDir string

	cniVersion string // of conflist; "" is 1.0.0
	disableGC  bool   // conflist's disableGC
}

func newTestNet(t *testing.T, name string) *testNet {
	t.Helper()
	seq := int(netSeq.Add(1))
	k := (os.Getpid()%24)*10 + seq%10 // distinct across the tests of one run
	_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.99.%d.0/24", k%250+1))
	n := &testNet{
		name:    name,
		bridge:  fmt.Sprintf("cnishim-c%d", k),
		subnet:  subnet,
		ipamDir: t.TempDir(),
	}
	suite.mu.Lock()
	suite.bridges = append(suite.bridges, n.bridge)
	suite.mu.Unlock()
	if _, err := netlink.LinkByName(n.bridge); err == nil {
		t.Fatalf("bridge %s already exists: another run of these tests is going on, or one left it behind", n.bridge)
	}
	return n
}

// conflist is a bridge + host-local + portmap network list, of n.cniVersion (default 1.0.0).
func (n *testNet) conflist() string {
	version := cmp.Or(n.cniVersion, "1.0.0")
	return fmt.Sprintf(`{
  "cniVersion": %q,
  "name": %q,
  "disableGC": %t,
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, version, n.name, n.disableGC, n.bridge, n.ipamDir, n.subnet.String())
}

// gateway is the bridge's address, the host's address on the test network.
func (n *testNet) gateway() net.IP {
	ip := slices.Clone(n.subnet.IP.To4())
	ip[3] = 1
	return ip
}

// server is one `cnishim serve` process and the crictl set up to talk to it.
type server struct {
	t        *testing.T
	dir      string
	sock     string
	confDir  string
	cacheDir string
	stateDir string // absolute, for the test's own reads
	stateArg string // --state-dir as passed
	workDir  string // the server's working directory; "": the test's
	crictlCf string
	net      *testNet
	flags    []string // extra cnishim serve flags

	mu   sync.Mutex // guards cmd and logs
	cmd  *exec.Cmd
	done chan struct{}
	logs []string // one per process started

	ids []string // sandboxes created through runp
}

// startServer starts cnishim serve on fresh dirs with an empty conf dir and any extra flags,
// registers its stop and the leak check at cleanup, and waits until it answers.
func startServer(t *testing.T, n *testNet, extraFlags ...string) *server {
	t.Helper()
	return startServerWith(t, n, serverDirs{}, extraFlags...)
}

// serverDirs overrides where startServerWith puts a server's dirs; a zero field keeps the fresh
// default under the server's temp dir.
type serverDirs struct {
	cacheDir string // --cni-cache-dir, e.g. one another runtime uses too
	stateDir string // --state-dir as passed; a relative one is taken from workDir
	workDir  string // the server's working directory (default: the test's)
}

// startServerWith is startServer with some dirs given.
func startServerWith(t *testing.T, n *testNet, dirs serverDirs, extraFlags ...string) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{
		t:        t,
		dir:      dir,
		sock:     filepath.Join(dir, "cri.sock"),
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: cmp.Or(dirs.cacheDir, filepath.Join(dir, "cache")),
		stateDir: filepath.Join(dir, "state"),
		workDir:  dirs.workDir,
		crictlCf: filepath.Join(dir, "crictl.yaml"),
		net:      n,
		flags:    extraFlags,
	}
	if dirs.stateDir != "" {
		s.stateArg, s.stateDir = dirs.stateDir, dirs.stateDir
		if !filepath.IsAbs(dirs.stateDir) {
			base := dirs.workDir
			if base == "" {
				base, _ = os.Getwd()
			}
			s.stateDir = filepath.Join(base, dirs.stateDir)
		}
	}
	if err := os.MkdirAll(s.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A crictl config of the test's own, so crictl reads nothing global.
	cf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\ndebug: false\n", s.sock, s.sock)
	if err := os.WriteFile(s.crictlCf, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	before := leakcheck.Take(s.scope())
	t.Cleanup(func() {
		s.removeLeftoverPods()
		s.stop()
		// Leaks: whatever the test's pods had, then the bridge itself.
		after := leakcheck.Take(s.scope())
		for _, leak := range leakcheck.Leaks(before, after) {
			if strings.HasPrefix(leak, "host veth: ") {
				continue // host-wide and shared with other tests; see the bridge's ports below
			}
			t.Errorf("left behind: %s", leak)
		}
		if ports := bridgePortsOf(t, n.bridge); len(ports) > 0 {
			t.Errorf("left behind: veths on bridge %s: %v", n.bridge, ports)
		}
		if l, err := netlink.LinkByName(n.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", n.bridge, err)
			}
		}
		for i, log := range s.logs {
			if strings.Contains(log, "WARNING: DATA RACE") {
				t.Errorf("cnishim serve #%d reported a data race:\n%s", i+1, log)
			} else if t.Failed() {
				t.Logf("cnishim serve #%d log:\n%s", i+1, log)
			}
		}
	})
	s.start()
	return s
}

// removeLeftoverPods removes, through the server, any sandbox a test left (a test that passes
// removes its own), so that a failed test does not leave pods on the machine.
func (s *server) removeLeftoverPods() {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if !running {
		entries, _ := os.ReadDir(filepath.Join(s.stateDir, "sandboxes"))
		if len(entries) == 0 {
			return
		}
		s.start()
	}
	out, err := s.crictl("pods", "-q")
	if err != nil {
		s.t.Errorf("list pods at cleanup: %v", err)
		return
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return
	}
	if !s.t.Failed() {
		s.t.Errorf("the test left sandboxes: %v", ids)
	}
	if _, err := s.crictl(append([]string{"rmp", "-f"}, ids...)...); err != nil {
		s.t.Errorf("remove leftover pods: %v", err)
	}
}

func (s *server) scope() leakcheck.Scope {
	return leakcheck.Scope{
		HostLocalDirs: []string{s.net.ipamDir},
		CacheDir:      s.cacheDir,
		NetnsDir:      filepath.Join(s.stateDir, "netns"),
		RuleNeedles:   s.needles(),
	}
}

func (s *server) needles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// start starts a cnishim serve process over the server's dirs and waits until it answers.
func (s *server) start() {
	s.t.Helper()
	logf, err := os.CreateTemp(s.dir, "serve-*.log")
	if err != nil {
		s.t.Fatal(err)
	}
	args := []string{"serve",
		"--listen", "unix://" + s.sock,
		"--state-dir", cmp.Or(s.stateArg, s.stateDir),
		"--cni-conf-dir", s.confDir,
		"--cni-bin-dir", env.cniBin,
		"--cni-cache-dir", s.cacheDir,
		"--operation-timeout", "1m",
		"--shutdown-grace", "30s",
		"-v", "4",
	}
	cmd := exec.Command(env.cnishim, append(args, s.flags...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.workDir
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	idx := len(s.logs)
	s.logs = append(s.logs, "")
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		b, _ := os.ReadFile(logf.Name())
		_ = logf.Close()
		s.mu.Lock()
		s.logs[idx] = string(b)
		s.mu.Unlock()
		close(done)
	}()

	// Wait until the server answers; fail at once if it exits.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), 2*time.Minute)
	defer cancel()
	for {
		if _, err := s.crictlCtx(ctx, "version"); err == nil {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("cnishim serve exited at start: %v\n%s", cmd.ProcessState, s.lastLog())
		case <-ctx.Done():
			s.t.Fatalf("cnishim serve did not answer on %s", s.sock)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *server) lastLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs[len(s.logs)-1]
}

// kill kills the server with SIGKILL and waits for it to die.
func (s *server) kill() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("no server running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	<-done
}

// stop stops a running server with SIGTERM and checks that it exits 0.
func (s *server) stop() {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if !running {
		return
	}
	if err := s.terminate(); err != nil {
		s.t.Error(err)
	}
}

// terminate sends SIGTERM to the running server and waits for it to exit; an error says how it
// did not exit 0.
func (s *server) terminate() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("no server running")
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if !cmd.ProcessState.Success() {
			return fmt.Errorf("cnishim serve exited with %v after SIGTERM", cmd.ProcessState)
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("cnishim serve did not stop within 2 minutes of SIGTERM")
	}
}

// crictl runs crictl against the server and returns its stdout; an error carries stderr.
func (s *server) crictl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), 3*time.Minute) // also used at cleanup
	defer cancel()
	return s.crictlCtx(ctx, args...)
}

func (s *server) crictlCtx(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--runtime-endpoint", "unix://" + s.sock, "--image-endpoint", "unix://" + s.sock, "--timeout", "30s"}, args...)
	cmd := exec.CommandContext(ctx, env.crictl, full...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "CRI_CONFIG_FILE=" + s.crictlCf}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("crictl %s: did not finish: %w (stderr: %s)", strings.Join(args, " "), ctx.Err(), stderr.String())
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// mustCrictl is crictl failing the test on error.
func (s *server) mustCrictl(args ...string) string {
	s.t.Helper()
	out, err := s.crictl(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// installConf copies the test network's conflist into the conf dir with plain cp, as an
// operator would: the file appears empty first and is then written in place.
func (s *server) installConf() {
	s.t.Helper()
	src := filepath.Join(s.dir, "10-"+s.net.name+".conflist")
	if err := os.WriteFile(src, []byte(s.net.conflist()), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if out, err := exec.Command("cp", src, s.confDir+"/").CombinedOutput(); err != nil {
		s.t.Fatalf("cp %s %s: %v: %s", src, s.confDir, err, out)
	}
}

// criInfo is the part of `crictl info -o json` the tests read.
type criInfo struct {
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  bool   `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
	Config *struct {
		File       string   `json:"file"`
		Name       string   `json:"name"`
		CNIVersion string   `json:"cniVersion"`
		Plugins    []string `json:"plugins"`
	} `json:"config"`
	LastLoadError string `json:"lastLoadError"`
}

func (s *server) info() criInfo {
	s.t.Helper()
	var ci criInfo
	out := s.mustCrictl("info", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ci); err != nil {
		s.t.Fatalf("crictl info: %v\n%s", err, out)
	}
	return ci
}

// networkReady returns the NetworkReady condition of crictl info.
func (s *server) networkReady() (ready bool, reason, message string) {
	s.t.Helper()
	ci := s.info()
	for _, c := range ci.Status.Conditions {
		if c.Type == "NetworkReady" {
			return c.Status, c.Reason, c.Message
		}
	}
	s.t.Fatal("crictl info has no NetworkReady condition")
	return false, "", ""
}

// waitNetworkReady polls crictl info until NetworkReady is want, and returns how long it took.
// It fails the test only if that never happens within a generous bound.
func (s *server) waitNetworkReady(want bool) time.Duration {
	s.t.Helper()
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		ready, _, msg := s.networkReady()
		if ready == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("NetworkReady never became %v (last message: %s)", want, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podSpec is a crictl pod config.
type podSpec struct {
	name     string
	hostPort int32 // 0: no port mapping
	labels   map[string]string
}

const containerPort = 8080

// runp writes the pod config and runs `crictl runp`, returning the sandbox ID.
func (s *server) runp(p podSpec) string {
	s.t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": p.name, "namespace": "e2e", "uid": "uid-" + p.name, "attempt": 0},
		"hostname": p.name,
		"labels":   p.labels,
		"linux":    map[string]any{},
	}
	if p.hostPort != 0 {
		cfg["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": containerPort, "host_port": p.hostPort}}
		s.addNeedle(fmt.Sprintf("dport %d", p.hostPort))
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(s.dir, p.name+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
	id := strings.TrimSpace(s.mustCrictl("runp", path))
	if len(id) != 64 {
		s.t.Fatalf("crictl runp printed %q, want a 64-character sandbox ID", id)
	}
	s.addNeedle(id)
	return id
}

func (s *server) addNeedle(n string) {
	s.mu.Lock()
	s.ids = append(s.ids, n)
	s.mu.Unlock()
	suite.mu.Lock()
	suite.needles = append(suite.needles, n)
	suite.mu.Unlock()
}

// podStatus is the part of `crictl inspectp -o json` the tests read.
type podStatus struct {
	Status struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Network *struct {
			IP string `json:"ip"`
		} `json:"network"`
		Linux struct {
			Namespaces struct {
				Options struct {
					Network string `json:"network"`
				} `json:"options"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"status"`
	Info struct {
		NetNSPath string `json:"netnsPath"`
		State     string `json:"state"`
		Reason    string `json:"reason"`
	} `json:"info"`
}

func (s *server) inspectp(id string) podStatus {
	s.t.Helper()
	out := s.mustCrictl("inspectp", "-o", "json", id)
	var ps podStatus
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		s.t.Fatalf("crictl inspectp: %v\n%s", err, out)
	}
	return ps
}

// podIP returns the pod's IP from crictl inspectp, checking it lies in the test's subnet.
func (s *server) podIP(id string) net.IP {
	s.t.Helper()
	ps := s.inspectp(id)
	if ps.Status.Network == nil {
		s.t.Fatalf("crictl inspectp %s: no network status", id)
	}
	ip := net.ParseIP(ps.Status.Network.IP)
	if ip == nil || !s.net.subnet.Contains(ip) {
		s.t.Fatalf("pod %s has IP %q, want one in %s", id, ps.Status.Network.IP, s.net.subnet)
	}
	return ip
}

// freeHostPort returns a TCP port nothing on the host listens on right now.
func freeHostPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// bridgePortsOf lists the interfaces enslaved to the bridge; none if it does not exist.
func bridgePortsOf(t *testing.T, bridge string) []string {
	t.Helper()
	ports, err := leakcheck.BridgePorts(bridge)
	if err != nil {
		t.Errorf("%v", err)
	}
	return ports
}
