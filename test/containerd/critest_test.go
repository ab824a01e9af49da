//go:build linux

package containerd

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// critestNetworking are critest's Networking specs, which containerd with cnishim must pass:
// a focus that matches fewer (a renamed spec in a new cri-tools) fails the test rather than
// passing on nothing.
var critestNetworking = []string{
	"Networking runtime should support networking runtime should support DNS config [Conformance]",
	"Networking runtime should support networking runtime should support set hostname [Conformance]",
	"Networking runtime should support networking runtime should support port mapping with only container port [Conformance]",
	"Networking runtime should support networking runtime should support port mapping with host port and container port [Conformance]",
}

// critest's Networking specs pass against containerd built with the go-cni drop-in, running
// real containers, and nothing is left behind.
func TestCritestNetworking(t *testing.T) {
	n := newNode(t, framework.CnishimContainerd)
	before := n.state()
	res, err := framework.RunCritest(t.Context(), env.Critest, n.Dir, n.Sock, []string{`Networking`}, nil, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failed() {
		t.Errorf("critest spec %s", f)
	}
	if passed, want := res.Passed(), slices.Sorted(slices.Values(critestNetworking)); !slices.Equal(passed, want) {
		t.Errorf("critest passed specs:\n  %s\nwant:\n  %s", strings.Join(passed, "\n  "), strings.Join(want, "\n  "))
	}
	if err := n.leaks(before); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("critest output:\n%s", res.Output)
	}
}
