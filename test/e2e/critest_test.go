//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// critestFocus selects the specs of critest (cri-tools' CRI validation suite) that need no
// container and no image: sandbox lifecycle, the sandbox calls' idempotence, runtime info.
// docs/critest.md says which specs run and why the others do not.
var critestFocus = []string{
	`PodSandbox runtime should support basic operations on PodSandbox`,
	`Idempotence (StopPodSandbox|RemovePodSandbox) `,
	`Runtime info `,
}

// critestSkip leaves out focused specs cnishim fails on purpose; docs/critest.md says why.
var critestSkip []string

// critestWant are the specs that must run and pass: a focus that matches fewer (a renamed spec
// in a new cri-tools) fails the test rather than passing on nothing.
var critestWant = []string{
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support running PodSandbox [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support stopping PodSandbox [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support removing PodSandbox [Conformance]",
	"PodSandbox runtime should support basic operations on PodSandbox runtime should support preserving PodSandbox attributes [Conformance]",
	"Idempotence StopPodSandbox should not return an error if not found",
	"Idempotence StopPodSandbox should not return an error if already stopped",
	"Idempotence RemovePodSandbox should not return an error if not found",
	"Runtime info runtime should support returning runtime info runtime should return version info [Conformance]",
	"Runtime info runtime should support returning runtime info runtime should return runtime conditions [Conformance]",
}

// ginkgoReport is the part of a ginkgo JSON report the test reads.
type ginkgoReport []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
	}
}

// critest, built by hack/install-critest.sh, runs its sandbox-only specs against cnishim serve
// with a real network: every focused spec runs and passes, and nothing is left behind.
func TestCritestSandboxSpecs(t *testing.T) {
	critest := env.Critest
	if _, err := os.Stat(critest); err != nil {
		t.Fatalf("critest missing (run hack/install-critest.sh or make deps): %v", err)
	}
	s := readyServer(t, "e2e-critest")
	report := filepath.Join(s.Dir, "critest-report.json")
	args := []string{
		"-runtime-endpoint", "unix://" + s.Sock,
		"-image-endpoint", "unix://" + s.Sock,
		"-config", s.Crictlrc,
		"--ginkgo.no-color",
		"--ginkgo.v",
		"--ginkgo.json-report", report,
	}
	for _, f := range critestFocus {
		args = append(args, "--ginkgo.focus", f)
	}
	for _, sk := range critestSkip {
		args = append(args, "--ginkgo.skip", sk)
	}
	// A hang guard only.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, critest, args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.Dir}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("critest %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}

	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("critest report: %v\n%s", err, out.String())
	}
	var rep ginkgoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("critest report %s: %v", report, err)
	}
	var passed []string
	for _, suite := range rep {
		for _, sp := range suite.SpecReports {
			if sp.LeafNodeType != "It" || sp.State == "skipped" {
				continue
			}
			name := strings.Join(append(slices.Clone(sp.ContainerHierarchyTexts), sp.LeafNodeText), " ")
			name = strings.TrimPrefix(name, "[k8s.io] ")
			if sp.State != "passed" {
				t.Errorf("critest spec %q: %s", name, sp.State)
				continue
			}
			passed = append(passed, name)
		}
	}
	slices.Sort(passed)
	want := slices.Sorted(slices.Values(critestWant))
	if !slices.Equal(passed, want) {
		t.Errorf("critest passed specs:\n  %s\nwant:\n  %s", strings.Join(passed, "\n  "), strings.Join(want, "\n  "))
	}
	if t.Failed() {
		t.Logf("critest output:\n%s", out.String())
	}
}
