//go:build linux

package framework

import (
	"bufio"
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
)

// The containerd builds hack/install-containerd.sh makes, under Env.Containerd.
const (
	// StockContainerd is containerd as released, with containerd's go-cni.
	StockContainerd = "stock"
	// CnishimContainerd is the same containerd built with the go-cni drop-in (gocni/).
	CnishimContainerd = "cnishim"
)

// Builds are both containerd builds, stock first.
var Builds = []string{StockContainerd, CnishimContainerd}

// ContainerdOptions are how a test sets up a Containerd; a zero field keeps the default.
type ContainerdOptions struct {
	// Build is StockContainerd or CnishimContainerd.
	Build string
	// Net is the network the configuration directory gets (nil: the directory stays empty).
	Net *Net
	// MaxConfNum is the CRI plugin's cni max_conf_num (default 1).
	MaxConfNum int
	// CRIRuntime is more TOML for the [plugins.'io.containerd.cri.v1.runtime'] table.
	CRIRuntime string
	// Binary is the containerd binary to run instead of the build's, e.g. a copy under a name
	// of the test's own that pkill -x may target (containerd_integration.go).
	Binary string
	// Netns is the network namespace (a path) the node is: the holder, and so containerd and
	// everything entering the node, runs in it ("" is the host's).
	Netns string
	// Images are more dirs of image archives to import, with the test images (each as
	// hack/images writes one: *.tar and a list).
	Images []string
}

// Containerd is one containerd with dirs, socket and shim socket dir of its own, its network
// namespace mounts under its state dir, running in a mount namespace of its own that a holder
// process keeps: there, /var/lib is a directory of the test's, so libcni's cache (/var/lib/cni,
// which go-cni cannot move) and the drop-in's records are the test's alone, and the host's
// /var/lib is never written. Restarts enter the same namespace, so the mounts of running pods
// (their netns, their rootfs) survive containerd as they do on a node. Its cleanup removes
// every pod, stops containerd, kills whatever is left in the namespace and the pods' cgroups,
// and fails the test if a pod's netns or IP is left.
type Containerd struct {
	T     *testing.T
	Env   *Env
	Build string
	Name  string
	Dir   string // the instance's own dir (short: the shim socket dir must be)
	// Root, State are containerd's; VarLib is what /var/lib shows inside the namespace.
	Root, State, VarLib string
	Sock                string
	ConfDir             string
	CacheDir            string // libcni's cache, as seen from the host
	Config              string // the config file
	Log                 string // containerd's log file (appended across restarts)
	Net                 *Net
	// CgroupParent is the cgroup every pod of the test gets (RunPod sets it).
	CgroupParent string
	// ownsK8sCgroup: containerd's default cgroup parent, /k8s.io, did not exist when the
	// instance started (pods without a parent of their own, critest's, go there).
	ownsK8sCgroup bool

	opts   ContainerdOptions
	holder *exec.Cmd
	daemon
}

// containerdSeq numbers instances, for short dir and cgroup names.
var containerdSeq = Slots{Procs: 64, Per: 64}

// StartContainerd starts a containerd of the build opts names, with the test images imported.
func StartContainerd(t *testing.T, e *Env, name string, opts ContainerdOptions) *Containerd {
	t.Helper()
	if e.Containerd == "" {
		t.Fatal("framework: Needs.Containerd not set")
	}
	n := containerdSeq.Next()
	// The shim's socket path must fit in sun_path (108 bytes) with a 64-character hash: keep
	// the dir short.
	dir, err := os.MkdirTemp("/tmp", fmt.Sprintf("ctd%d-", n))
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{
		T: t, Env: e, Build: opts.Build, Name: name, Dir: dir, opts: opts, Net: opts.Net,
		Root:         filepath.Join(dir, "root"),
		State:        filepath.Join(dir, "state"),
		VarLib:       filepath.Join(dir, "varlib"),
		Sock:         filepath.Join(dir, "c.sock"),
		ConfDir:      filepath.Join(dir, "net.d"),
		Config:       filepath.Join(dir, "config.toml"),
		Log:          filepath.Join(dir, "containerd.log"),
		CgroupParent: fmt.Sprintf("/cnishim-e2e-%d-%d", os.Getpid(), n),
	}
	c.CacheDir = filepath.Join(c.VarLib, "cni")
	if _, err := os.Stat("/sys/fs/cgroup/memory" + k8sCgroup); errors.Is(err, os.ErrNotExist) {
		c.ownsK8sCgroup = true
	}
	for _, d := range []string{c.Root, c.State, c.ConfDir, c.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.cleanup)
	if c.Net != nil {
		WriteFileAtomic(t, c.ConfDir, "10-"+c.Net.Name+".conflist", c.Net.Conflist())
	}
	if err := os.WriteFile(c.Config, []byte(c.configTOML()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Pulls (critest makes one for every image it uses) go to the test registry alone.
	if err := TestRegistry(t, filepath.Join(e.Containerd, "images")).WriteHostsDir(filepath.Join(dir, "certs.d")); err != nil {
		t.Fatal(err)
	}
	c.startHolder()
	c.Start()
	c.importImages()
	return c
}

func (c *Containerd) bin(name string) string {
	return filepath.Join(c.Env.Containerd, c.Build, "bin", name)
}

// configTOML is the instance's config: every path its own (as root, the shims' sockets and
// runc's state would otherwise go to /run/containerd, NRI's socket to /var/run/nri), pulls
// going to the test registry.
func (c *Containerd) configTOML() string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
imports = []

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins]
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = %[13]q
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = %[5]q
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %[6]q
  [plugins.'io.containerd.cri.v1.runtime']
    enable_selinux = false
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    cdi_spec_dirs = []
%[7]s
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %[8]q
          Root = %[9]q
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%[10]q]
      conf_dir = %[11]q
      max_conf_num = %[12]d
`, c.Root, c.State, c.Sock, c.Sock+".ttrpc", filepath.Join(c.Dir, "opt"), filepath.Join(c.Dir, "certs.d"),
		c.opts.CRIRuntime, filepath.Join(c.Env.Containerd, "bin", "runc"), filepath.Join(c.State, "runc"),
		c.Env.CNIBin, c.ConfDir, cmp.Or(c.opts.MaxConfNum, 1), filepath.Join(c.Dir, "s"))
}

// startHolder starts the process that keeps the instance's mount namespace: slave to the
// host's, so the host's mounts still show inside and the instance's never show outside.
func (c *Containerd) startHolder() {
	c.T.Helper()
	script := fmt.Sprintf("mount --bind %q /var/lib && echo ready && exec sleep infinity", c.VarLib)
	argv := []string{"unshare", "--mount", "--propagation", "slave", "sh", "-c", script}
	if c.opts.Netns != "" {
		argv = append([]string{"nsenter", "--net=" + c.opts.Netns, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.T.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.T.Fatalf("unshare: %v", err)
	}
	c.holder = cmd
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		c.T.Fatalf("the mount namespace holder did not start: %q %v", line, err)
	}
}

// Start starts containerd in the instance's mount namespace and waits for its socket; after
// containerd exited by itself, it starts it again, as its supervisor would.
func (c *Containerd) Start() {
	c.T.Helper()
	if err := c.start(); err != nil {
		c.T.Fatal(err)
	}
}

// start is Start returning its error rather than failing the test, for a caller off the test's
// goroutine (the restart supervisor of containerd_integration.go) and for the cleanup.
func (c *Containerd) start() error {
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := c.enter(cmp.Or(c.opts.Binary, c.bin("containerd")), "--config", c.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shim and runc come from the instance's bin dirs, found through PATH.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(c.Env.Containerd, c.Build, "bin")+":"+filepath.Join(c.Env.Containerd, "bin")+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	return awaitServing("containerd "+c.Name, c.Log, c.started(cmd), 100*time.Millisecond, func() bool {
		_, err := c.Crictl("version")
		return err == nil
	})
}

// Kill sends sig to containerd (not its shims: nsenter execs containerd, so the process is
// containerd itself) and waits for it to exit.
func (c *Containerd) Kill(sig syscall.Signal) {
	c.T.Helper()
	if err := c.kill(sig); err != nil {
		c.T.Errorf("containerd %s: %v", c.Name, err)
	}
}

// Exited reports whether containerd exited by itself (Kill not called).
func (c *Containerd) Exited() bool { return c.exitedByItself() }

// Restart stops containerd with SIGTERM and starts it again.
func (c *Containerd) Restart() {
	c.T.Helper()
	c.Kill(syscall.SIGTERM)
	c.Start()
}

// Reboot does to the node what a reboot does, and leaves containerd stopped: containerd, its
// shims and every process of the pods killed; the mount namespace gone with its holder, and
// with it the pods' netns mounts (so every pod's netns and veth goes) and rootfs mounts; the
// state dir (a tmpfs on a node) emptied; the network's bridge deleted. The root dir and /var/lib
// (libcni's cache) and the network's IPAM store, on disk on a node, are kept. A new holder
// keeps a new mount namespace; Start starts containerd in it. Kill a kubelet first.
func (c *Containerd) Reboot() {
	c.T.Helper()
	c.Kill(syscall.SIGKILL)
	killShims(c.T, c.Sock)
	killCgroup(c.T, c.CgroupParent)
	_ = c.holder.Process.Kill()
	_ = c.holder.Wait()
	if err := os.RemoveAll(c.State); err != nil {
		c.T.Fatalf("reboot: %v", err)
	}
	if err := os.MkdirAll(c.State, 0o700); err != nil {
		c.T.Fatal(err)
	}
	if c.Net != nil {
		DeleteBridge(c.T, c.Net.Bridge)
	}
	c.startHolder()
}

func (c *Containerd) tailLog() string { return TailFile(c.Log, 8000) }

// HolderPID is the pid of the process that keeps the node's mount namespace (every pod's netns
// mount, the node's /var/lib): gone, so is the namespace.
func (c *Containerd) HolderPID() int { return c.holder.Process.Pid }

// enter returns the command running argv on the node: in the holder's mount and network
// namespaces, as containerd runs.
func (c *Containerd) enter(argv ...string) *exec.Cmd {
	ns := "/proc/" + strconv.Itoa(c.holder.Process.Pid) + "/ns/"
	return exec.Command("nsenter", append([]string{"--mount=" + ns + "mnt", "--net=" + ns + "net", "--"}, argv...)...)
}

// importImages imports every test image hack/install-containerd.sh wrote, and those of
// ContainerdOptions.Images.
func (c *Containerd) importImages() {
	c.T.Helper()
	var tars []string
	for _, dir := range append([]string{filepath.Join(c.Env.Containerd, "images")}, c.opts.Images...) {
		more, err := filepath.Glob(filepath.Join(dir, "*.tar"))
		if err != nil || len(more) == 0 {
			c.T.Fatalf("no image archives in %s (make deps-containerd, or deps-k8s): %v", dir, err)
		}
		tars = append(tars, more...)
	}
	for _, tar := range tars {
		cmd := exec.Command(c.bin("ctr"), "--address", c.Sock, "--namespace", "k8s.io", "images", "import", "--local", tar)
		if out, err := cmd.CombinedOutput(); err != nil {
			c.T.Fatalf("ctr images import %s: %v\n%s", tar, err, out)
		}
	}
}

// CrictlCtx runs crictl against the instance and returns its stdout; an error carries stderr.
func (c *Containerd) CrictlCtx(ctx context.Context, args ...string) (string, error) {
	out, err := RunCrictl(ctx, c.Env.Crictl, c.Sock, time.Minute, []string{"HOME=" + c.Dir}, args...)
	if err != nil {
		return out, fmt.Errorf("containerd %s: %w", c.Name, err)
	}
	return out, nil
}

// Crictl is CrictlCtx bounded by 3 minutes; it works at cleanup too.
func (c *Containerd) Crictl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.T.Context()), 3*time.Minute)
	defer cancel()
	return c.CrictlCtx(ctx, args...)
}

// MustCrictl is Crictl failing the test on error.
func (c *Containerd) MustCrictl(args ...string) string {
	c.T.Helper()
	out, err := c.Crictl(args...)
	if err != nil {
		c.T.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// podConfig writes the pod's sandbox config, its host port mapped to the web image's port 80,
// and returns its path.
func (c *Containerd) podConfig(p PodSpec) string {
	path, err := p.writeConfig(c.Dir, 80, map[string]any{
		"log_directory": filepath.Join(c.Dir, "logs", p.Name),
		"linux":         map[string]any{"cgroup_parent": c.CgroupParent},
	})
	if err != nil {
		c.T.Fatal(err)
	}
	return path
}

// RunPodCtx runs the pod's sandbox and returns its ID.
func (c *Containerd) RunPodCtx(ctx context.Context, p PodSpec) (string, error) {
	out, err := c.CrictlCtx(ctx, "runp", c.podConfig(p))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	if len(id) != 64 {
		return "", fmt.Errorf("crictl runp printed %q, want a sandbox ID", id)
	}
	return id, nil
}

// RunPod runs the pod's sandbox and returns its ID, failing the test on error.
func (c *Containerd) RunPod(p PodSpec) string {
	c.T.Helper()
	id, err := c.RunPodCtx(c.T.Context(), p)
	if err != nil {
		c.T.Fatal(err)
	}
	return id
}

// Container images the tests run (hack/images writes them).
const (
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	WebImage     = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
)

// RunContainer creates and starts a container in the pod: image with args (the image's
// command when none), and returns its ID.
func (c *Containerd) RunContainer(pod string, p PodSpec, name, image string, args ...string) string {
	c.T.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": image},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	if len(args) > 0 {
		cfg["command"] = args
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(c.Dir, "ctr-"+p.Name+"-"+name+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		c.T.Fatal(err)
	}
	id := c.MustCrictl("create", pod, path, c.podConfig(p))
	c.MustCrictl("start", id)
	return id
}

// Exec runs a command in a container and returns its output.
func (c *Containerd) Exec(ctr string, args ...string) (string, error) {
	return c.Crictl(append([]string{"exec", ctr}, args...)...)
}

// PodIP returns the pod's IP as containerd reports it.
func (c *Containerd) PodIP(id string) net.IP {
	c.T.Helper()
	ps, err := ParsePodStatus([]byte(c.MustCrictl("inspectp", "-o", "json", id)))
	if err != nil {
		c.T.Fatal(err)
	}
	if ps.Status.Network == nil || net.ParseIP(ps.Status.Network.IP) == nil {
		c.T.Fatalf("pod %s on containerd %s has no IP: %+v", id, c.Name, ps.Status.Network)
	}
	return net.ParseIP(ps.Status.Network.IP)
}

// RemovePod stops and removes the pod's sandbox, as the kubelet does.
func (c *Containerd) RemovePod(id string) error {
	if _, err := c.Crictl("stopp", id); err != nil {
		return err
	}
	_, err := c.Crictl("rmp", id)
	return err
}

// PodIDs lists the sandboxes containerd knows.
func (c *Containerd) PodIDs() ([]string, error) {
	out, err := c.Crictl("pods", "-q")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// NetworkReady returns containerd's NetworkReady condition and its message; when containerd
// does not answer, false and why.
func (c *Containerd) NetworkReady() (bool, string) {
	var info struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	out, err := c.Crictl("info", "-o", "json")
	if err != nil {
		return false, err.Error()
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return false, fmt.Sprintf("crictl info: %v", err)
	}
	for _, cond := range info.Status.Conditions {
		if cond.Type == "NetworkReady" {
			return cond.Status, cond.Reason + ": " + cond.Message
		}
	}
	return false, "crictl info: no NetworkReady condition"
}

// WaitNetworkReady polls NetworkReady until it is want, for at most d; it returns whether it
// got there and the last message.
func (c *Containerd) WaitNetworkReady(want bool, d time.Duration) (bool, string) {
	c.T.Helper()
	deadline := time.Now().Add(d)
	for {
		ready, msg := c.NetworkReady()
		if ready == want {
			return true, msg
		}
		if time.Now().After(deadline) {
			return false, msg
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RSS returns containerd's resident memory, in MiB.
func (c *Containerd) RSS(t testing.TB) float64 {
	t.Helper()
	cmd := c.process()
	if cmd == nil {
		t.Fatal("containerd is not running")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/<containerd>/status")
	return 0
}

// CPU returns the CPU time (user and system) containerd has spent, and that of the children it
// has reaped: the CNI plugins it ran, and the shim binary's short start and delete runs (not
// the shims themselves, which leave it, nor runc, their child).
func (c *Containerd) CPU(t testing.TB) (self, children time.Duration) {
	t.Helper()
	cmd := c.process()
	if cmd == nil {
		t.Fatal("containerd is not running")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after "(comm)": state is the 3rd field; utime, stime, cutime, cstime the 14th-17th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ticks := func(i int) time.Duration {
		n, err := strconv.ParseInt(f[i-3], 10, 64)
		if err != nil {
			t.Fatalf("/proc/<containerd>/stat field %d: %v", i, err)
		}
		return time.Duration(n) * time.Second / clockTicks
	}
	return ticks(14) + ticks(15), ticks(16) + ticks(17)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// NetState is what the containerd's pods can leave on its network: IPs in its IPAM store,
// libcni cache entries, veths on its bridge, and the iptables rules holding one of needles. The
// containerd must have a Net.
func (c *Containerd) NetState(needles ...string) leakcheck.State {
	return leakcheck.Take(leakcheck.Scope{
		HostLocalDirs: []string{c.Net.IPAMDir},
		CacheDir:      c.CacheDir,
		Bridges:       []string{c.Net.Bridge},
		RuleNeedles:   needles,
	})
}

// NetLeaks returns what the containerd's pods left since before (NetState with needles), and
// the netns mounts left under its state dir; nil when nothing.
func (c *Containerd) NetLeaks(before leakcheck.State, needles ...string) error {
	problems := leakcheck.Leaks(before, c.NetState(needles...))
	if m := c.NetnsMounts(); len(m) > 0 {
		problems = append(problems, "netns mounts: "+strings.Join(m, ", "))
	}
	if len(problems) > 0 {
		return errors.New("left behind: " + strings.Join(problems, "; "))
	}
	return nil
}

// NetnsMounts lists the network namespace mounts under the state dir, as containerd's mount
// namespace shows them.
func (c *Containerd) NetnsMounts() []string {
	c.T.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.holder.Process.Pid) + "/mountinfo")
	if err != nil {
		c.T.Fatal(err)
	}
	var out []string
	prefix := filepath.Join(c.State, "netns") + "/"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, f[4])
		}
	}
	slices.Sort(out)
	return out
}

// cleanup removes every pod, stops containerd and the holder, kills what is left in the pods'
// cgroups and removes the dirs. It fails the test if a pod could not be removed.
func (c *Containerd) cleanup() {
	t := c.T
	if t.Failed() {
		t.Logf("containerd %s (%s) log tail:\n%s", c.Name, c.Build, c.tailLog())
	}
	keepLog(c.Log, filepath.Base(c.Dir)+"-"+c.Build+".log")
	c.forget()
	if c.process() == nil && c.holder != nil {
		// Start it again to remove what the test left, as a node's containerd would. Not
		// Start: its t.Fatal would end this cleanup here, leaving the pods' processes,
		// cgroups, shims, holder and dirs behind.
		if err := c.start(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if ids, err := c.PodIDs(); err == nil {
		for _, id := range ids {
			if err := c.RemovePod(id); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	c.Kill(syscall.SIGTERM)
	killCgroup(t, c.CgroupParent)
	if c.ownsK8sCgroup {
		removeEmptyCgroup(t, k8sCgroup)
	}
	if c.holder != nil {
		_ = c.holder.Process.Kill()
		_ = c.holder.Wait()
	}
	// The shims left (containerd killed mid-way) are in the namespace the holder kept.
	killShims(t, c.Sock)
	if err := os.RemoveAll(c.Dir); err != nil {
		// An overlay mount of a killed shim may linger a moment.
		time.Sleep(time.Second)
		if err := os.RemoveAll(c.Dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// killShims kills the shims serving the instance whose socket is sock.
func killShims(t *testing.T, sock string) {
	procs, err := Processes()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, p := range procs {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
		if err != nil {
			continue
		}
		cmdline := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, sock) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// k8sCgroup is containerd's cgroup parent for pods that name none.
const k8sCgroup = "/k8s.io"

// removeEmptyCgroup removes the cgroup, in every v1 hierarchy, where it and its children are
// empty: another runtime may have come to use it meanwhile, so nothing is killed.
func removeEmptyCgroup(t *testing.T, cgroup string) {
	hier, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroup)
	for _, dir := range hier {
		rmdirTree(t, dir, true)
	}
}

// rmdirTree removes the cgroup dir and every cgroup below it, deepest first. busyOK: a cgroup
// still in use (EBUSY) is left without an error.
func rmdirTree(t *testing.T, dir string, busyOK bool) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		err := syscall.Rmdir(dirs[i])
		if err != nil && !errors.Is(err, os.ErrNotExist) && !(busyOK && errors.Is(err, syscall.EBUSY)) {
			t.Errorf("cleanup: rmdir %s: %v", dirs[i], err)
		}
	}
}

// killCgroup kills every process in the cgroup parent, in every v1 hierarchy, and removes it.
func killCgroup(t *testing.T, parent string) {
	hier, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	for _, dir := range hier {
		for range 50 {
			var pids []int
			_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
				if err == nil && d.Name() == "cgroup.procs" {
					b, _ := os.ReadFile(path)
					for _, f := range strings.Fields(string(b)) {
						if pid, err := strconv.Atoi(f); err == nil {
							pids = append(pids, pid)
						}
					}
				}
				return nil
			})
			if len(pids) == 0 {
				break
			}
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(100 * time.Millisecond)
		}
		rmdirTree(t, dir, false)
	}
}
