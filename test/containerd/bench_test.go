//go:build linux && containerd_bench

package containerd

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/framework"
)

// The containerd storms of make bench: RunPodSandbox (the pause container and the pod's
// network) through containerd's CRI, stock containerd against containerd with cnishim, on two
// chains, with 1, 8 and 32 callers, for CNISHIM_BENCH_ROUNDS rounds (default 3). Results go to
// the test log and to $CNISHIM_BENCH_OUT/containerd.md (default _output/bench). hack/bench.sh
// runs it (BENCH_ONLY=containerd alone). CNISHIM_BENCH_CHAINS and CNISHIM_BENCH_CALLERS narrow
// it ("bench slow-ipam", "1 8 32" by default).
//
// The chains are those of cnibench: "bench" is bridge + host-local + portmap, which spends CPU;
// "slow-ipam" is bridge with an IPAM that waits 500 ms (an IPAM asking a server), then hands
// the allocation on to host-local, + portmap.

// stormCell is one storm: a chain, a caller count, a build.
type stormCell struct {
	chain   string
	callers int
	pods    int
}

// stormResult is one storm's figures.
type stormResult struct {
	podsPerSec float64
	p50, p99   time.Duration
}

func TestContainerdStorms(t *testing.T) {
	rounds := framework.EnvInt(t, "CNISHIM_BENCH_ROUNDS", 3)
	pods := framework.EnvInt(t, "CNISHIM_BENCH_STORM_PODS", 64)
	chains := strings.Fields(cmp.Or(os.Getenv("CNISHIM_BENCH_CHAINS"), "bench slow-ipam"))
	callerCounts := framework.EnvInts(t, "CNISHIM_BENCH_CALLERS", "1 8 32")
	var cells []stormCell
	for _, chain := range chains {
		for _, callers := range callerCounts {
			n := pods
			if callers == 1 {
				n = pods / 4 // one caller at a time: a quarter of the pods gives the same spread
			}
			cells = append(cells, stormCell{chain: chain, callers: callers, pods: n})
		}
	}
	results := map[string][]stormResult{} // key: cell/build
	nodes := map[string]*stormNode{}
	for _, build := range framework.Builds {
		for _, chain := range chains {
			nodes[build+"/"+chain] = newStormNode(t, build, chain)
		}
	}
	// Rounds interleave the builds, so that the machine's noise falls on both alike.
	for r := range rounds {
		for _, c := range cells {
			for _, build := range framework.Builds {
				res := nodes[build+"/"+c.chain].storm(t, c)
				key := fmt.Sprintf("%s/%d/%s", c.chain, c.callers, build)
				results[key] = append(results[key], res)
				t.Logf("round %d %s %d callers %s: %.2f pods/s, p50 %v, p99 %v", r+1, c.chain, c.callers, build, res.podsPerSec, res.p50, res.p99)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| chain | callers | pods | stock pods/s | cnishim pods/s | ratio | stock p99 | cnishim p99 | ratio |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cells {
		s := median(results[fmt.Sprintf("%s/%d/%s", c.chain, c.callers, framework.StockContainerd)])
		m := median(results[fmt.Sprintf("%s/%d/%s", c.chain, c.callers, framework.CnishimContainerd)])
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %.2f | %.2f | %v | %v | %.2f |\n", c.chain, c.callers, c.pods,
			s.podsPerSec, m.podsPerSec, m.podsPerSec/s.podsPerSec, s.p99.Round(time.Millisecond), m.p99.Round(time.Millisecond), float64(m.p99)/float64(s.p99))
	}
	fmt.Fprintf(&b, "\nMedian of %d rounds per cell (pods/s and p99 each their own median).\n", rounds)
	rss := 500 // 0 leaves the memory figure out
	if v := os.Getenv("CNISHIM_BENCH_RSS_PODS"); v != "" {
		var err error
		if rss, err = strconv.Atoi(v); err != nil || rss < 0 {
			t.Fatalf("CNISHIM_BENCH_RSS_PODS=%q: want a number of pods, 0 for none", v)
		}
	}
	if rss > 0 && nodes[framework.StockContainerd+"/bench"] != nil {
		fmt.Fprintf(&b, "\n| build | pods | containerd RSS (MiB) |\n|---|---|---|\n")
		for _, build := range framework.Builds {
			mib := nodes[build+"/bench"].rssAt(t, rss)
			fmt.Fprintf(&b, "| %s | %d | %.1f |\n", build, rss, mib)
		}
	}
	t.Log("\n" + b.String())
	framework.WriteBenchTable(t, env, "containerd.md", b.String())
}

// median returns the median pods/s and the median p50 and p99 of results.
func median(results []stormResult) stormResult {
	var rates []float64
	var p50s, p99s []time.Duration
	for _, r := range results {
		rates = append(rates, r.podsPerSec)
		p50s = append(p50s, r.p50)
		p99s = append(p99s, r.p99)
	}
	slices.Sort(rates)
	slices.Sort(p50s)
	slices.Sort(p99s)
	i := len(results) / 2
	return stormResult{podsPerSec: rates[i], p50: p50s[i], p99: p99s[i]}
}

// stormNode is a containerd of one build on one chain, with a CRI client.
type stormNode struct {
	*node
	rt runtimeapi.RuntimeServiceClient
	// seq names pods uniquely across storms.
	seq int
}

func newStormNode(t *testing.T, build, chain string) *stormNode {
	t.Helper()
	n := newNode(t, build, func(o *framework.ContainerdOptions) { o.Net = nil })
	// A /16: the memory figure holds 500 pods.
	net := framework.NewNet(t, "storm", fmt.Sprintf("cnictds%d", n.k), fmt.Sprintf("10.%d.0.0/16", 160+n.k%60))
	ipam := "host-local"
	if chain == "slow-ipam" {
		bin := t.TempDir()
		plugintest.MustInstallAs(t, bin, "slowipam")
		plugintest.MustWriteBehavior(t, plugintest.SidecarPath(filepath.Join(bin, "slowipam")), plugintest.Behavior{
			Commands: map[string]plugintest.Action{
				"ADD": {SleepMS: 500, DelegateIPAM: true, IPAMDelegate: "host-local"},
				"DEL": {DelegateIPAM: true, IPAMDelegate: "host-local"},
			},
		})
		n.setBinDirs(t, bin)
		ipam = "slowipam"
	}
	list := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "storm", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true,
   "ipam": {"type": %q, "ranges": [[{"subnet": %q}]], "dataDir": %q}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}`, net.Bridge, ipam, net.Subnet, net.IPAMDir)
	framework.WriteFileAtomic(t, n.ConfDir, "10-storm.conflist", list)
	if ok, msg := n.WaitNetworkReady(true, 15*time.Second); !ok {
		t.Fatalf("storm network not ready: %s", msg)
	}
	conn, err := grpc.NewClient("unix://"+n.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &stormNode{node: n, rt: runtimeapi.NewRuntimeServiceClient(conn)}
}

func (s *stormNode) sandboxConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "storm", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(s.Dir, "logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: s.CgroupParent},
	}
}

// storm runs c.pods RunPodSandbox calls through c.callers callers and returns the set-up
// figures; then it stops and removes every pod.
func (s *stormNode) storm(t *testing.T, c stormCell) stormResult {
	t.Helper()
	start := time.Now()
	ids, lat, err := s.runPods(t, "storm", c.pods, c.callers)
	wall := time.Since(start)
	s.removeAll(t, ids)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lat)
	return stormResult{
		podsPerSec: float64(c.pods) / wall.Seconds(),
		p50:        lat[len(lat)/2],
		p99:        lat[(len(lat)*99+99)/100-1],
	}
}

// runPods runs pods RunPodSandbox calls, named prefix-N, through callers callers, and
// returns the sandboxes made, each call's latency, and the first error.
func (s *stormNode) runPods(t *testing.T, prefix string, pods, callers int) (ids []string, lat []time.Duration, firstErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	jobs := make(chan string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for name := range jobs {
				start := time.Now()
				resp, err := s.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: s.sandboxConfig(name)})
				d := time.Since(start)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("RunPodSandbox %s: %w", name, err)
				}
				if err == nil {
					lat = append(lat, d)
					ids = append(ids, resp.PodSandboxId)
				}
				mu.Unlock()
			}
		})
	}
	for range pods {
		s.seq++
		jobs <- prefix + "-" + strconv.Itoa(s.seq)
	}
	close(jobs)
	wg.Wait()
	return ids, lat, firstErr
}

// removeAll stops and removes the sandboxes, 8 at a time.
func (s *stormNode) removeAll(t *testing.T, ids []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range jobs {
				if _, err := s.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Errorf("StopPodSandbox %s: %v", id, err)
				}
				if _, err := s.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Errorf("RemovePodSandbox %s: %v", id, err)
				}
			}
		})
	}
	for _, id := range ids {
		jobs <- id
	}
	close(jobs)
	wg.Wait()
}

// rssAt starts pods pods, 16 callers, and returns containerd's resident memory then, in MiB.
func (s *stormNode) rssAt(t *testing.T, pods int) float64 {
	t.Helper()
	ids, _, err := s.runPods(t, "rss", pods, 16)
	if err != nil {
		s.removeAll(t, ids)
		t.Fatal(err)
	}
	mib := s.RSS(t)
	s.removeAll(t, ids)
	return mib
}
