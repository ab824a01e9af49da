//go:build linux && containerd_full

package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// integrationTests are containerd's own CRI integration tests (its module's ./integration at
// the pinned version) that go through CNI: sandbox setup and teardown, restart recovery,
// dual-stack, IP leaks, and the rollback paths with CNI and shim failpoints.
var integrationTests = []string{
	"TestContainerdRestart",
	"TestContainerdRestartSandboxRecover",
	"TestPodDualStack",
	"TestSandboxRemoveWithoutIPLeakage",
	"TestSandboxStopWithNilCNIResult",
	"TestRunPodSandboxWithSetupCNIFailure",
	"TestRunPodSandboxWithShimStartFailure",
	"TestRunPodSandboxWithShimDeleteFailure",
	"TestRunPodSandboxWithShimStartAndTeardownCNIFailure",
	"TestRunPodSandboxAndTeardownCNISlow",
	"TestPodSandboxController_ShouldBackoffExitEventWhenFail",
}

// integrationNotRun are the CNI tests of the same suite this one does not run, and why.
var integrationNotRun = map[string]string{
	"TestIssue10244LoopbackV2": "starts a containerd of its own, by the name `containerd` from PATH, with a default " +
		"config (shim sockets under /run/containerd, NRI at /var/run/nri, CNI from /etc/cni/net.d and /opt/cni/bin), " +
		"pulls ghcr.io/containerd/busybox:1.36 from the network and mounts /usr/local/bin/loopback-v2: " +
		"it runs only with its source patched",
}

// integrationTimeout bounds one test's run of the binary.
const integrationTimeout = 3 * time.Minute

// integrationResult is one test's outcome on one build.
type integrationResult struct {
	status string // PASS, FAIL, SKIP, or "" (not run)
	note   string // what else happened: no result line, restarts, pods left
	dirty  bool   // the pods it left could not be removed
}

func (r integrationResult) String() string {
	s := r.status
	if s == "" {
		s = "not run"
	}
	if r.note != "" {
		s += " (" + r.note + ")"
	}
	return s
}

// passed: the test passed and left nothing that could not be removed.
func (r integrationResult) passed() bool { return r.status == "PASS" && !r.dirty }

// TestContainerdIntegration runs containerd's own CRI integration tests that touch CNI against
// stock containerd and containerd with the go-cni drop-in, each test in a run of its own of the
// test binary against one containerd per build, and logs the side-by-side table (also written
// to _output/containerd-e2e/integration.md). The cnishim build must pass every test stock
// passes; a test stock fails is recorded as such.
func TestContainerdIntegration(t *testing.T) {
	dir := filepath.Join(env.Containerd, "integration")
	binary := filepath.Join(dir, "cri-integration.test")
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%v (run hack/install-containerd-integration.sh or make deps-containerd-integration)", err)
	}
	outDir := filepath.Join(env.Repo, "_output", "containerd-e2e")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	results := map[string]map[string]integrationResult{}
	start := time.Now()
	for _, build := range framework.Builds {
		results[build] = map[string]integrationResult{}
		t.Run(build, func(t *testing.T) {
			runIntegration(t, build, binary, filepath.Join(outDir, "integration-"+build+".log"), results[build])
		})
	}
	stock, cnishim := results[framework.StockContainerd], results[framework.CnishimContainerd]
	for _, name := range integrationTests {
		switch s, c := stock[name], cnishim[name]; {
		case s.passed() && !c.passed():
			t.Errorf("%s: stock containerd passes, containerd with cnishim: %s", name, c)
		case s.status == "FAIL":
			t.Logf("%s: stock containerd fails it: %s", name, s)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "containerd %s's CRI integration tests that touch CNI (hack/install-containerd-integration.sh), "+
		"each run on its own against one containerd per build (test/containerd/integration_test.go), in %s:\n\n",
		containerdVersion(), time.Since(start).Round(time.Second))
	fmt.Fprintf(&b, "| test | stock containerd | containerd with cnishim |\n|---|---|---|\n")
	for _, name := range integrationTests {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, stock[name], cnishim[name])
	}
	for name := range integrationNotRun {
		fmt.Fprintf(&b, "| %s | not run | not run |\n", name)
	}
	for name, why := range integrationNotRun {
		fmt.Fprintf(&b, "\n%s is not run: %s.\n", name, why)
	}
	t.Log("\n" + b.String())
	if err := os.WriteFile(filepath.Join(outDir, "integration.md"), []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}

// runIntegration runs every test against a containerd of build, appending the binary's output
// to logPath, and records the outcomes.
func runIntegration(t *testing.T, build, binary, logPath string, res map[string]integrationResult) {
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ic := framework.StartIntegrationContainerd(t, env, build, filepath.Dir(binary))
	for _, name := range integrationTests {
		if d, ok := t.Deadline(); ok && time.Until(d) < integrationTimeout+time.Minute {
			t.Errorf("%s: not run: the go test timeout is near (give go test -timeout 20m)", name)
			continue
		}
		var r integrationResult
		var notes []string
		if ids, err := ic.PodIDs(); err != nil || len(ids) > 0 {
			// TestContainerdRestart wants none; every test starts from none.
			notes = append(notes, fmt.Sprintf("pods before the run: %d %v", len(ids), err))
		}
		got, out, runErr := ic.RunIntegrationTest(t.Context(), binary, name, integrationTimeout)
		fmt.Fprintf(log, "=== %s on %s containerd: %v\n%s\n", name, build, runErr, out)
		r.status = got[name]
		if r.status == "" {
			r.status = "FAIL"
			notes = append(notes, fmt.Sprintf("no result line: %v", runErr))
		}
		if n := ic.TakeRestarts(); n > 0 {
			t.Logf("%s: containerd restarted %d times", name, n)
		}
		// What the test leaves: failpoint plugins asleep, pods.
		ic.KillFailpointPlugins()
		if err := ic.WaitServing(time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := ic.RemoveAllPods(); err != nil {
			r.dirty = true
			notes = append(notes, "pods left that could not be removed: "+err.Error())
		}
		r.note = strings.Join(notes, "; ")
		res[name] = r
		t.Logf("%s on %s containerd: %s", name, build, r)
		if r.status == "FAIL" {
			t.Logf("%s output:\n%s", name, tail(out, 6000))
		}
	}
}

// containerdVersion is the pinned version the builds report, for the table's caption.
func containerdVersion() string {
	b, err := os.ReadFile(filepath.Join(env.Containerd, "integration", ".version"))
	if err != nil {
		return "(unknown)"
	}
	if f := strings.Fields(string(b)); len(f) > 1 {
		return f[1]
	}
	return "(unknown)"
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
