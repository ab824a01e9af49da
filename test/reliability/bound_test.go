//go:build linux

package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// boundNetwork is the network of TestPodNetworksBoundRealPlugins.
const boundNetwork = "relbound"

// TestPodNetworksBoundRealPlugins: one pod asks for the same network 21 times (its default
// network and 20 extra attachments), with real plugins: the bridge, whose IPAM is cnitest
// sleeping 300 ms before it has the real host-local allocate. With the ADD and DEL bounds at
// 2, a sampler of /proc never sees more than 2 of the IPAM's processes at once, at set-up or
// at teardown, where every chain used to start at once; the pod gets its 21 addresses, and
// its teardown leaves nothing.
func TestPodNetworksBoundRealPlugins(t *testing.T) {
	n := newNode(t)
	ipamBin := plugintest.MustInstallAs(t, n.binDir, "slowipam")[0]
	// The bridge's IPAM finds its behavior beside its binary.
	ipamBehavior := ipamBin + behavior.SidecarSuffix
	plugintest.MustWriteBehavior(t, ipamBehavior, plugintest.Behavior{Commands: map[string]behavior.Action{
		"ADD": {SleepMS: 300, DelegateIPAM: true, IPAMDelegate: "host-local"},
		"DEL": {SleepMS: 100, DelegateIPAM: true, IPAMDelegate: "host-local"},
	}})
	bridge := fmt.Sprintf(`{
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
      "ipam": {"type": "slowipam", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, n.bridge, filepath.Join(n.ipamDir, "bridge"), n.subnets[0])
	n.writeConf("10-bound.conflist", conflist("1.0.0", boundNetwork, bridge))
	p := n.plugin(time.Minute, cninetwork.WithAdmission(cninetwork.AdmissionLimits{Add: 2, Del: 2}), cninetwork.WithMaxPodNetworks(21))
	framework.WaitDefault(t, p, boundNetwork)

	before := leakcheck.Take(n.scope("", n.cacheDir))
	pod := n.pod("many")
	pod.ExtraNetworks = slices.Repeat([]cninetwork.NetworkSelection{{Name: boundNetwork}}, 20)
	ctx, cancel := framework.CallContext(t)
	defer cancel()

	most := sampleProcs(t, ipamBin, func() {
		st, err := p.SetUpPod(ctx, pod)
		if err != nil {
			t.Fatalf("set-up of a pod on 21 networks: %v", err)
		}
		if len(st.Attachments) != 21 {
			t.Fatalf("%d attachments; want 21", len(st.Attachments))
		}
	})
	t.Logf("set-up: at most %d IPAM processes at once", most)
	if most > 2 || most < 1 {
		t.Errorf("set-up: %d IPAM processes seen at once; want 1 or 2, the ADD bound", most)
	}
	most = sampleProcs(t, ipamBin, func() {
		if err := p.TearDownPod(ctx, pod); err != nil {
			t.Fatalf("teardown: %v", err)
		}
	})
	t.Logf("teardown: at most %d IPAM processes at once", most)
	if most > 2 {
		t.Errorf("teardown: %d IPAM processes seen at once; want at most 2, the DEL bound", most)
	}
	framework.CheckNoStrays(t, []string{n.binDir})
	framework.CheckNoLeaks(t, "a pod on 21 networks", before, leakcheck.Take(n.scope("", n.cacheDir)))
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// sampleProcs runs f while it reads, every few milliseconds, how many processes run the binary
// bin, and returns the most it saw at once.
func sampleProcs(t *testing.T, bin string, f func()) int {
	t.Helper()
	var most atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			most.Store(max(most.Load(), int64(countProcs(bin))))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int(most.Load())
}

// countProcs counts the processes whose executable is bin.
func countProcs(bin string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == bin {
			n++
		}
	}
	return n
}
