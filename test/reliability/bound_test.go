//go:build linux

package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
// 2, a sampler of /proc never sees more than 2 chains in their IPAM at once, at set-up or at
// teardown, where every chain used to start at once; the pod gets its 21 addresses, and
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

	most := sampleProcs(t, ipamBin, "ADD", func() {
		st, err := p.SetUpPod(ctx, pod)
		if err != nil {
			t.Fatalf("set-up of a pod on 21 networks: %v", err)
		}
		if len(st.Attachments) != 21 {
			t.Fatalf("%d attachments; want 21", len(st.Attachments))
		}
	})
	t.Logf("set-up: at most %d chains in their IPAM at once", most)
	if most > 2 || most < 1 {
		t.Errorf("set-up: %d chains seen in their IPAM at once; want 1 or 2, the ADD bound", most)
	}
	most = sampleProcs(t, ipamBin, "DEL", func() {
		if err := p.TearDownPod(ctx, pod); err != nil {
			t.Fatalf("teardown: %v", err)
		}
	})
	t.Logf("teardown: at most %d chains in their IPAM at once", most)
	if most > 2 {
		t.Errorf("teardown: %d chains seen in their IPAM at once; want at most 2, the DEL bound", most)
	}
	framework.CheckNoStrays(t, []string{n.binDir})
	framework.CheckNoLeaks(t, "a pod on 21 networks", before, leakcheck.Take(n.scope("", n.cacheDir)))
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// sampleProcs runs f while it reads, every few milliseconds, how many chains run the binary bin
// for the CNI command command (see countProcs), and returns the most it saw at once. (The config watcher
// may run the binary for VERSION meanwhile; those do not count.)
func sampleProcs(t *testing.T, bin, command string, f func()) int {
	t.Helper()
	var most atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			most.Store(max(most.Load(), int64(countProcs(bin, command))))
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

// countProcs counts the chains (the pod's interfaces, CNI_IFNAME) whose processes run the
// binary bin for the CNI command command at one moment. A chain's IPAM may show as two
// processes for an instant (a child forked to exec its delegate still runs bin), hence the
// count of interfaces. One pass over /proc is not a moment either: a process seen early in it
// may exit, and another start, before the pass ends. So the processes the pass saw are looked
// at again: those still running at the second look were all running together when the first
// pass ended.
func countProcs(bin, command string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	// ifName returns the interface of a process running bin for command, or "".
	ifName := func(pid string) string {
		exe, err := os.Readlink(filepath.Join("/proc", pid, "exe"))
		if err != nil || exe != bin {
			return ""
		}
		env, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		if err != nil {
			return ""
		}
		vars := strings.Split(string(env), "\x00")
		if !slices.Contains(vars, "CNI_COMMAND="+command) {
			return ""
		}
		for _, kv := range vars {
			if v, ok := strings.CutPrefix(kv, "CNI_IFNAME="); ok {
				return v
			}
		}
		return ""
	}
	var seen []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil && ifName(e.Name()) != "" {
			seen = append(seen, e.Name())
		}
	}
	chains := map[string]bool{}
	for _, pid := range seen {
		if i := ifName(pid); i != "" {
			chains[i] = true
		}
	}
	return len(chains)
}
