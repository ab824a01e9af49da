//go:build linux

package cninetwork

import (
	"net"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/testing/roottest"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// TestLoopbackInProcess brings lo up in a real network namespace without any plugin. It needs
// root, as make test runs it.
func TestLoopbackInProcess(t *testing.T) {
	roottest.Require(t)
	path, err := netns.Create(t.TempDir(), "lo-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(path); err != nil {
			t.Error(err)
		}
	})
	before, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if up := loUp(t, path); up {
		t.Fatal("lo is up in a new namespace before setup")
	}

	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, withLoopbackInProcess())
	pod := testPod("lo1")
	pod.NetNS = path
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if !loUp(t, path) {
		t.Fatal("lo is not up after SetUpPod")
	}
	wantCalls(t, fe.callsOf(""), "ADD ptp net-b eth0") // no loopback plugin ran

	// The calling goroutine's namespace is untouched.
	after, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatal("the test goroutine is no longer in the network namespace it started in")
	}

	// A namespace that is gone fails the setup before any plugin runs.
	fe.reset()
	gone := testPod("lo2")
	gone.NetNS = path + "-gone"
	if _, err := p.SetUpPod(t.Context(), gone); err == nil {
		t.Fatal("SetUpPod with a missing netns succeeded")
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("plugins ran: %v", summary(t, c))
	}
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
}

// loUp reports whether lo is up inside the namespace at path.
func loUp(t *testing.T, path string) bool {
	t.Helper()
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return lo.Attrs().Flags&net.FlagUp != 0
}
