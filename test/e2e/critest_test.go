//go:build linux

package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
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

// critest, built by hack/install-critest.sh, runs its sandbox-only specs against cnishim serve
// with a real network: every focused spec runs and passes, and nothing is left behind.
func TestCritestSandboxSpecs(t *testing.T) {
	critest := env.Critest
	if _, err := os.Stat(critest); err != nil {
		t.Fatalf("critest missing (run hack/install-critest.sh or make deps): %v", err)
	}
	s := readyServer(t, "e2e-critest")
	res, err := framework.RunCritest(t.Context(), critest, s.Dir, s.Sock, critestFocus, critestSkip, 10*time.Minute, "-config", s.Crictlrc)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failed() {
		t.Errorf("critest spec %s", f)
	}
	passed := res.Passed()
	want := slices.Sorted(slices.Values(critestWant))
	if !slices.Equal(passed, want) {
		t.Errorf("critest passed specs:\n  %s\nwant:\n  %s", strings.Join(passed, "\n  "), strings.Join(want, "\n  "))
	}
	if t.Failed() {
		t.Logf("critest output:\n%s", res.Output)
	}
}
