//go:build linux && kubelet_bench

package kubelet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/test/framework"
)

// The kubelet storms of make bench: N static pods (a busybox that sleeps) written at once,
// the time until the kubelet reports all of them Ready (its own status, polled every 50 ms on
// its read-only port), then their manifests removed and the time until the IPAM store holds
// none of their IPs; stock containerd against containerd with cnishim, a kubelet on each, for
// CNISHIM_BENCH_ROUNDS rounds (default 3), with CNISHIM_BENCH_KUBELET_PODS pods ("1 30 60").
// Rounds interleave the builds, so that the machine's noise falls on both alike, and each storm
// ends with its sandboxes removed, so that none pays for the last one's clean-up. Results go to
// the test log and to $CNISHIM_BENCH_OUT/kubelet.md (default _output/bench). hack/bench.sh runs
// it (BENCH_ONLY=kubelet alone).
func TestKubeletStorms(t *testing.T) {
	rounds := framework.EnvInt(t, "CNISHIM_BENCH_ROUNDS", 3)
	sizes := framework.EnvInts(t, "CNISHIM_BENCH_KUBELET_PODS", "1 30 60")
	nodes := map[string]*node{}
	for _, build := range framework.Builds {
		nodes[build] = newNode(t, build, false)
	}
	type figures struct{ ready, released, cpuSelf, cpuChildren []time.Duration }
	results := map[string]*figures{} // key: size/build
	seq := 0
	for r := range rounds {
		for _, size := range sizes {
			// Each round changes which build goes first, so that neither always runs on the
			// heels of the other's storm.
			order := slices.Clone(framework.Builds)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, build := range order {
				seq++
				self0, children0 := nodes[build].CPU(t)
				ready, released := nodes[build].storm(t, fmt.Sprintf("r%d", seq), size)
				self1, children1 := nodes[build].CPU(t)
				key := fmt.Sprintf("%d/%s", size, build)
				if results[key] == nil {
					results[key] = &figures{}
				}
				results[key].ready = append(results[key].ready, ready)
				results[key].released = append(results[key].released, released)
				results[key].cpuSelf = append(results[key].cpuSelf, self1-self0)
				results[key].cpuChildren = append(results[key].cpuChildren, children1-children0)
				t.Logf("round %d, %d pods, %s: all Ready in %v, IPs released in %v; containerd's CPU %v, its reaped children's %v", r+1, size, build, ready, released, self1-self0, children1-children0)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| pods | stock: manifests to all Ready | cnishim | ratio | stock: removed to IPs released | cnishim | ratio |\n|---|---|---|---|---|---|---|\n")
	for _, size := range sizes {
		s, m := results[fmt.Sprintf("%d/%s", size, framework.StockContainerd)], results[fmt.Sprintf("%d/%s", size, framework.CnishimContainerd)]
		sr, mr, sd, md := framework.Median(s.ready), framework.Median(m.ready), framework.Median(s.released), framework.Median(m.released)
		fmt.Fprintf(&b, "| %d | %v | %v | %.2f | %v | %v | %.2f |\n", size,
			sr.Round(time.Millisecond), mr.Round(time.Millisecond), float64(mr)/float64(sr),
			sd.Round(time.Millisecond), md.Round(time.Millisecond), float64(md)/float64(sd))
	}
	fmt.Fprintf(&b, "\n| pods | stock: containerd's CPU per pod | cnishim | stock: its reaped children's CPU per pod | cnishim |\n|---|---|---|---|---|\n")
	for _, size := range sizes {
		s, m := results[fmt.Sprintf("%d/%s", size, framework.StockContainerd)], results[fmt.Sprintf("%d/%s", size, framework.CnishimContainerd)]
		per := func(d time.Duration) time.Duration { return (d / time.Duration(size)).Round(100 * time.Microsecond) }
		fmt.Fprintf(&b, "| %d | %v | %v | %v | %v |\n", size, per(framework.Median(s.cpuSelf)), per(framework.Median(m.cpuSelf)), per(framework.Median(s.cpuChildren)), per(framework.Median(m.cpuChildren)))
	}
	fmt.Fprintf(&b, "\nMedian of %d rounds per cell; a ratio is cnishim's median over stock's. CPU is per pod, set-up and teardown, from containerd's /proc stat (its own, and its reaped children's: the CNI plugins, and the shim binary's start and delete runs).\n", rounds)
	t.Log("\n" + b.String())
	framework.WriteBenchTable(t, env, "kubelet.md", b.String())
}

// storm writes size static pods named prefix-N at once and returns the time until the kubelet
// reports them all Ready, and the time from their manifests' removal until none of their IPs
// is reserved. Fresh names each storm: a static pod re-created under an old name waits for the
// kubelet's next sync.
func (n *node) storm(t *testing.T, prefix string, size int) (ready, released time.Duration) {
	t.Helper()
	names := make([]string, size)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	start := time.Now()
	for _, name := range names {
		n.K.WriteManifest(name, newPod(name, nil, sleeper()))
	}
	if _, err := n.K.WaitReady(5*time.Minute, names...); err != nil {
		t.Fatal(err)
	}
	ready = time.Since(start)
	start = time.Now()
	for _, name := range names {
		n.K.RemoveManifest(name)
	}
	if !framework.WaitUntil(5*time.Minute, func() bool {
		return len(leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{n.Net.IPAMDir}}).IPs) == 0
	}) {
		t.Fatalf("%d pods' IPs still reserved 5 minutes after their manifests went", size)
	}
	released = time.Since(start)
	// Let the kubelet forget them before the next storm.
	if msg := n.K.WaitPods(2*time.Minute, func(pods map[string]framework.KubePod) string {
		if len(pods) > 0 {
			return fmt.Sprintf("%d pods left", len(pods))
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}
	// Remove their sandboxes, stopped, now rather than when the kubelet's garbage collection
	// would (within a minute): not amid the next storm, the other build's perhaps.
	ids, err := n.PodIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		// The kubelet's garbage collection may have got there first.
		if _, err := n.Crictl("rmp", id); err != nil && !strings.Contains(err.Error(), "NotFound") {
			t.Fatal(err)
		}
	}
	return ready, released
}
