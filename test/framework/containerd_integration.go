//go:build linux

package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// What containerd's CRI integration tests (its module's ./integration, built by
// hack/install-containerd-integration.sh) expect of the containerd they run against, which
// IntegrationContainerd provides on top of a Containerd:
//
//   - RestartContainerd kills containerd with `pkill -<sig> -x ^<-containerd-bin>$`, waits for
//     `pidof -s <name>` to find nothing and then for containerd to serve again: it never starts
//     containerd itself (upstream runs containerd in a restart loop). So containerd runs as a
//     copy of the build's binary under a name of the instance's own (pkill never hits another
//     containerd on the machine), and a supervisor starts it again when it exits by itself,
//     after a pause long enough for pidof to see it gone.
//   - The failpoint tests run sandboxes with the runtime handler runc-fp (the runc shim with
//     failpoints, configured through pod annotations) whose network is the CNI plugin
//     cni-bridge-fp (failpoints read from a file a pod annotation names; it delegates to bridge):
//     a handler with a conf dir of its own, and cni-bridge-fp in a CNI bin dir of the instance's.
//   - TestSandboxRemoveWithoutIPLeakage reads host-local's default store /var/lib/cni/networks,
//     which is the instance's own in its mount namespace: the test binary runs in that namespace
//     (RunIntegrationTest), and the networks' host-local keeps its default dataDir.
//   - TestPodDualStack wants an IPv4 and an IPv6 address: both networks have both ranges.

// integrationSlots number the instances' bridges and subnets.
var integrationSlots = Slots{Procs: 32, Per: 4}

// integrationSeq numbers the instances of the process, for their binary names.
var integrationSeq atomic.Int32

// Process names are the executable's base name cut to 15 characters (TASK_COMM_LEN - 1).
const commLen = 15

// IntegrationContainerd is a Containerd set up for containerd's CRI integration tests.
type IntegrationContainerd struct {
	*Containerd
	// ProcName is the name containerd runs under: the tests' -containerd-bin.
	ProcName string
	// Work is the instance's scratch dir: its binaries, the failpoint network's conf dir, and
	// TMP, the tests' TMPDIR.
	Work, TMP string
	fpPlugin  string // the instance's copy of cni-bridge-fp
	stop      chan struct{}
	done      chan struct{}
	restarts  chan struct{}
}

// IntegrationRestartDelay is how long the supervisor waits before it starts an exited
// containerd again: RestartContainerd polls pidof every second and must see it gone.
const IntegrationRestartDelay = 3 * time.Second

// StartIntegrationContainerd starts a containerd of build for the CRI integration tests whose
// binaries are in dir (cni-bridge-fp, containerd-shim-runc-fp-v1).
func StartIntegrationContainerd(t *testing.T, e *Env, build, dir string) *IntegrationContainerd {
	t.Helper()
	for _, b := range []string{"cni-bridge-fp", "containerd-shim-runc-fp-v1"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%v (run hack/install-containerd-integration.sh or make deps-containerd-integration)", err)
		}
	}
	ic := &IntegrationContainerd{
		ProcName: fmt.Sprintf("ctdi%d_%d", os.Getpid(), integrationSeq.Add(1)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		restarts: make(chan struct{}, 100),
	}
	if len(ic.ProcName) > commLen {
		// A pid above 9999999 (pid_max is at most 4194304): cannot happen.
		t.Fatalf("process name %s is longer than %d characters", ic.ProcName, commLen)
	}
	work, err := os.MkdirTemp("/tmp", "ctdi-")
	if err != nil {
		t.Fatal(err)
	}
	ic.Work = work
	// The tests' pods have no cgroup parent: containerd puts them under /k8s.io in every
	// hierarchy, which is removed again at the end if it was not there (and is empty: another
	// containerd of the machine may be using it).
	var cgroups []string
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, "k8s.io")); errors.Is(err, os.ErrNotExist) {
			cgroups = append(cgroups, filepath.Join(h, "k8s.io"))
		}
	}
	// Registered first, runs last: after containerd's cleanup.
	t.Cleanup(func() {
		for _, cg := range cgroups {
			_ = syscall.Rmdir(cg)
		}
		if err := os.RemoveAll(work); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ic.TMP = filepath.Join(work, "tmp")
	cniBin := filepath.Join(work, "cni")
	fpConf := filepath.Join(work, "net.d-fp")
	for _, d := range []string{ic.TMP, cniBin, fpConf, filepath.Join(work, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// containerd under the instance's name.
	binary := filepath.Join(work, "bin", ic.ProcName)
	copyFile(t, filepath.Join(e.Containerd, build, "bin", "containerd"), binary)
	// The CNI bin dir: the real plugins, and cni-bridge-fp (a copy: the cleanup finds its
	// processes by their executable's path).
	plugins, err := os.ReadDir(e.CNIBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plugins {
		if err := os.Symlink(filepath.Join(e.CNIBin, p.Name()), filepath.Join(cniBin, p.Name())); err != nil {
			t.Fatal(err)
		}
	}
	ic.fpPlugin = filepath.Join(cniBin, "cni-bridge-fp")
	copyFile(t, filepath.Join(dir, "cni-bridge-fp"), ic.fpPlugin)

	k := integrationSlots.Next()
	def := NewNet(t, "ctdi-net", fmt.Sprintf("cniit%d", k), fmt.Sprintf("10.152.%d.0/24", k%250+1))
	fp := NewNet(t, "ctdi-net-fp", fmt.Sprintf("cniitfp%d", k), fmt.Sprintf("10.153.%d.0/24", k%250+1))
	WriteFileAtomic(t, fpConf, "10-"+fp.Name+".conflist",
		integrationConflist(fp, "cni-bridge-fp", fmt.Sprintf("fd00:153:%d::/64", k), `, "capabilities": {"io.kubernetes.cri.pod-annotations": true}`))

	// The failpoint handler. Its table goes into the runtime table's TOML ahead of
	// [...runtime.containerd], which TOML allows (a super-table defined after a sub-table).
	runc := filepath.Join(e.Containerd, "bin", "runc")
	handler := fmt.Sprintf(`    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc-fp]
      runtime_type = 'io.containerd.runc.v2'
      runtime_path = %q
      cni_conf_dir = %q
      cni_max_conf_num = 1
      pod_annotations = ['io.containerd.runtime.v2.shim.failpoint.*']
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc-fp.options]
        BinaryName = %q
        Root = %q
`, filepath.Join(dir, "containerd-shim-runc-fp-v1"), fpConf, runc, filepath.Join(work, "runc-fp"))

	ce := *e
	ce.CNIBin = cniBin
	ic.Containerd = StartContainerd(t, &ce, build, ContainerdOptions{Build: build, CRIRuntime: handler, Binary: binary})
	// The default network: written once containerd runs (the framework's Net has a dataDir of
	// its own, which TestSandboxRemoveWithoutIPLeakage must not see).
	WriteFileAtomic(t, ic.ConfDir, "10-"+def.Name+".conflist",
		integrationConflist(def, "bridge", fmt.Sprintf("fd00:152:%d::/64", k), ""))
	if ok, msg := ic.WaitNetworkReady(true, time.Minute); !ok {
		t.Fatalf("containerd %s: the network is not ready: %s", build, msg)
	}

	go ic.supervise()
	// Registered after StartContainerd's, runs before it: the supervisor is stopped before the
	// framework removes the pods and stops containerd.
	t.Cleanup(func() {
		close(ic.stop)
		<-ic.done
		ic.KillFailpointPlugins()
	})
	return ic
}

// integrationConflist is n's network of one plugin of type typ (bridge or cni-bridge-fp) with
// host-local in its default store, on n's IPv4 subnet and on v6, and extra JSON for the plugin.
func integrationConflist(n *Net, typ, v6, extra string) string {
	return Conflist("1.0.0", n.Name, fmt.Sprintf(`{
      "type": %q, "bridge": %q, "isGateway": true, "ipMasq": false, "promiscMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}], [{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}%s
    }`, typ, n.Bridge, n.Subnet.String(), v6, extra))
}

// cgroupHierarchies are the mounted cgroup hierarchies' dirs.
func cgroupHierarchies() []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/cgroup.procs")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		dirs = append(dirs, "/sys/fs/cgroup/cgroup.procs")
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// supervise starts containerd again when it exits by itself (pkill), after
// IntegrationRestartDelay, until stop closes.
func (ic *IntegrationContainerd) supervise() {
	defer close(ic.done)
	wait := func(d time.Duration) bool {
		select {
		case <-ic.stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	for wait(100 * time.Millisecond) {
		if !ic.Exited() {
			continue
		}
		if !wait(IntegrationRestartDelay) {
			return
		}
		if err := ic.start(); err != nil {
			// Errorf, not Fatal: this is not the test's goroutine.
			ic.T.Errorf("supervisor: %v", err)
			return
		}
		ic.restarts <- struct{}{}
	}
}

// WaitServing waits until containerd runs and serves (the supervisor may be restarting it).
func (ic *IntegrationContainerd) WaitServing(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if !ic.Exited() {
			if _, err := ic.Crictl("version"); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd %s does not serve after %v", ic.Name, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TakeRestarts returns how many times the supervisor restarted containerd since the last call.
func (ic *IntegrationContainerd) TakeRestarts() int {
	n := 0
	for {
		select {
		case <-ic.restarts:
			n++
		default:
			return n
		}
	}
}

// KillFailpointPlugins kills the instance's cni-bridge-fp processes: the tests that kill
// containerd amid a CNI ADD leave one sleeping for a day.
func (ic *IntegrationContainerd) KillFailpointPlugins() {
	procs, err := Processes()
	if err != nil {
		ic.T.Errorf("cleanup: %v", err)
		return
	}
	for _, p := range procs {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/exe")
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == ic.fpPlugin {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// failpointConfKey is the pod annotation naming a cni-bridge-fp's failpoint file.
const failpointConfKey = "failpoint.cni.containerd.io/confpath"

// RemoveAllPods stops and removes every sandbox, as a node's drain would; a cni-bridge-fp
// failpoint file the test removed with its temp dir is written again, empty (no failpoint),
// first: without it the plugin fails every DEL and the sandbox cannot be stopped. It returns
// what it could not remove.
func (ic *IntegrationContainerd) RemoveAllPods() error {
	ids, err := ic.PodIDs()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		out, err := ic.Crictl("inspectp", "-o", "json", id)
		if err == nil {
			var st struct {
				Status struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"status"`
			}
			if json.Unmarshal([]byte(out), &st) == nil {
				if p := st.Status.Annotations[failpointConfKey]; p != "" {
					if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
						_ = os.MkdirAll(filepath.Dir(p), 0o755)
						_ = os.WriteFile(p, []byte("{}"), 0o644)
					}
				}
			}
		}
		if err := ic.RemovePod(id); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// RunIntegrationTest runs test (a top-level test name) of the CRI integration test binary
// against the instance, in its mount namespace, and returns the results -test.v printed (top
// level and subtests) and the output.
func (ic *IntegrationContainerd) RunIntegrationTest(ctx context.Context, binary, test string, timeout time.Duration) (map[string]string, string, error) {
	// -test.timeout makes the binary print its goroutines and exit; the context is the backstop.
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--mount=/proc/"+strconv.Itoa(ic.holder.Process.Pid)+"/ns/mnt", "--",
		binary, "-test.v", "-test.count=1", "-test.timeout", timeout.String(),
		"-test.run", "^"+regexp.QuoteMeta(test)+"$",
		"-cri-endpoint", "unix://"+ic.Sock, "-containerd-bin", ic.ProcName)
	cmd.Dir = ic.TMP
	cmd.Env = append(os.Environ(), "TMPDIR="+ic.TMP)
	out, err := cmd.CombinedOutput()
	return ParseGoTestV(string(out)), string(out), err
}

// goTestResult is a `--- PASS: TestX/sub (0.01s)` line of go test -v, at any indent.
var goTestResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(`)

// ParseGoTestV returns the result of every test and subtest a go test -v output reports.
func ParseGoTestV(out string) map[string]string {
	res := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := goTestResult.FindStringSubmatch(sc.Text()); m != nil {
			res[m[2]] = m[1]
		}
	}
	return res
}
