//go:build linux

package cluster_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
	"github.com/cnishim/cnishim/test/framework"
)

// The knobs of TestClusterScale. Unset, it runs a small cluster (defaultScale) so that go test
// ./... proves the soak still works in a few seconds; make soak sets the real sizes.
const (
	envScaleNodes   = "CNISHIM_CLUSTER_SOAK_NODES"   // nodes
	envScalePods    = "CNISHIM_CLUSTER_SOAK_PODS"    // pods per node
	envScaleClients = "CNISHIM_CLUSTER_SOAK_CLIENTS" // CRI clients per node, all calling at once
	envScalePeers   = "CNISHIM_CLUSTER_SOAK_PEERS"   // pods on other nodes each pod dials
	envScaleSetups  = "CNISHIM_CLUSTER_SOAK_MAX_PARALLEL_SETUPS"
	envScaleSeed    = "CNISHIM_CLUSTER_SOAK_SEED"
	// envNetwork names the cluster's pod network (localcluster.Config.Network).
	envNetwork = "CLUSTER_NETWORK"
)

// scaleSize sizes TestClusterScale.
type scaleSize struct {
	nodes, pods, clients, peers int
	maxSetups                   int // --max-parallel-setups of every server; 0: the server's default
}

// defaultScale is the size of a run without the knobs: a few seconds under go test ./....
var defaultScale = scaleSize{nodes: 2, pods: 8, clients: 4, peers: 2}

// scaleRPCTimeout bounds one CRI call of the soak: a hang guard, not a latency assertion.
const scaleRPCTimeout = 5 * time.Minute

// scalePod is one pod of the soak.
type scalePod struct {
	name  string
	node  int
	id    string
	netns string
	ip    netip.Addr
	setUp time.Duration // RunPodSandbox's latency, as its client saw it
	ne    *localcluster.Netexec
}

// String names the pod and its node.
func (p *scalePod) String() string { return fmt.Sprintf("%s@node%d", p.name, p.node) }

// TestClusterScale is the cluster scale soak: on its own IPv4 cluster of
// $CNISHIM_CLUSTER_SOAK_NODES nodes on the network $CLUSTER_NETWORK (default kindnet), it sets
// up $CNISHIM_CLUSTER_SOAK_PODS pods on every node, each node's through
// $CNISHIM_CLUSTER_SOAK_CLIENTS CRI clients calling at once, every node at once, recording each
// RunPodSandbox's latency and every server's RSS. Every pod must come up ready with an IPv4
// address of its node's pod CIDR, no two alike. Then netexec runs in every pod, and every pod
// dials $CNISHIM_CLUSTER_SOAK_PEERS random pods on other nodes over TCP: each must answer with
// its own name and see the client pod's own IP (no SNAT). Then every pod is stopped and removed
// through the same clients, and no node may hold anything of them (nodeLeaks). It logs one
// summary line and a table per node.
func TestClusterScale(t *testing.T) {
	sz := scaleSizes(t)
	network := cmp.Or(os.Getenv(envNetwork), "kindnet")
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envScaleSeed); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envScaleSeed, v, err)
		}
		seed = s
	}
	t.Logf("%d nodes x %d pods on %s, %d clients per node, %d peers per pod, max-parallel-setups %s; seed %d (%s=%d repeats the mesh's choices)",
		sz.nodes, sz.pods, network, sz.clients, sz.peers, setupsName(sz.maxSetups), seed, envScaleSeed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	roomInNeighbourTable(t, 2*sz.nodes*sz.pods+sz.nodes*sz.nodes)
	c := scaleCluster(t, sz, network)
	for _, n := range c.Nodes {
		// The subnet's network and broadcast addresses and the gateway (host-local's default, .1) are not for pods.
		if free := n.PodCIDRs[0].Addr().BitLen() - n.PodCIDRs[0].Bits(); free < 31 && sz.pods > 1<<free-3 {
			t.Fatalf("%d pods per node: node %s's pod CIDR %s holds %d pod addresses", sz.pods, n.Name, n.PodCIDRs[0], 1<<free-3)
		}
	}
	rss := watchRSS(t, c)
	rt := make([][]runtimeapi.RuntimeServiceClient, len(c.Nodes))
	for i, n := range c.Nodes {
		rt[i] = criClients(t, n, sz.clients)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Hour)
	defer cancel()

	// Set-up: every node's pods through its clients, all nodes at once.
	pods := make([][]*scalePod, len(c.Nodes))
	for i := range c.Nodes {
		pods[i] = make([]*scalePod, sz.pods)
		for j := range pods[i] {
			pods[i][j] = &scalePod{name: fmt.Sprintf("scale-%d-%03d", i, j), node: i}
		}
	}
	setUpWall, clusterSetUp := onEveryNode(t, pods, rt, func(rt runtimeapi.RuntimeServiceClient, p *scalePod) error {
		return runScalePod(ctx, rt, p)
	})
	rssUp := rss.now()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d pods set up in %v", sz.nodes*sz.pods, clusterSetUp.Round(time.Millisecond))
	checkScaleIPs(t, c, pods)

	// Netexec in every pod, then the sampled mesh.
	var all []*scalePod
	for _, ps := range pods {
		all = append(all, ps...)
	}
	t.Cleanup(func() {
		for _, p := range all {
			if p.ne != nil {
				_ = p.ne.Stop()
			}
		}
	})
	workers := make([]struct{}, 16)
	eachParallel(all, workers, func(_ struct{}, p *scalePod) {
		nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		ne, err := localcluster.StartNetexec(nctx, env.netexec, p.netns, p.name)
		if err != nil {
			t.Error(err)
			return
		}
		p.ne = ne
	})
	if t.Failed() {
		t.FailNow()
	}
	netexecMem := netexecMemory(t, all)
	dials := meshPlan(rng, pods, sz.peers)
	meshStart := time.Now()
	var mu sync.Mutex
	var failures []string
	eachParallel(dials, make([]struct{}, 32), func(_ struct{}, d [2]*scalePod) {
		from, to := d[0], d[1]
		if err := ask(ctx, from.netns, "tcp", to.ip, netexecPort, to.name, from.ip); err != nil {
			mu.Lock()
			failures = append(failures, fmt.Sprintf("pod %s to pod %s: %v", from, to, err))
			mu.Unlock()
		}
	})
	meshTime := time.Since(meshStart)
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more", len(failures)-20)
			break
		}
		t.Error(f)
	}
	for _, p := range all {
		if err := p.ne.Stop(); err != nil {
			t.Errorf("stop netexec in %s: %v", p, err)
		}
		p.ne = nil
	}

	// Teardown: every pod stopped and removed through the same clients, all nodes at once.
	tearDownWall, clusterTearDown := onEveryNode(t, pods, rt, func(rt runtimeapi.RuntimeServiceClient, p *scalePod) error {
		return removeScalePod(ctx, rt, p)
	})
	rssEnd := rss.now()
	peak := rss.stop()

	var leaks []string
	for _, n := range c.Nodes {
		leaks = append(leaks, nodeLeaks(ctx, n)...)
	}
	if len(leaks) > 0 {
		t.Errorf("left behind after every pod was removed:\n  %s", strings.Join(leaks, "\n  "))
	}

	// The summary and the table.
	var lat []time.Duration
	for _, p := range all {
		lat = append(lat, p.setUp)
	}
	total := len(all)
	t.Logf("cluster scale %s %dx%d: set-up %d pods in %v = %.1f pods/s (latency p50 %v p99 %v max %v); mesh %d/%d TCP dials answered, no SNAT, in %v; teardown in %v = %.1f pods/s; server RSS peak %s; netexec RSS %s; leaks %d",
		network, sz.nodes, sz.pods, total, clusterSetUp.Round(time.Millisecond), rate(total, clusterSetUp),
		pct(lat, 50), pct(lat, 99), pct(lat, 100), len(dials)-len(failures), len(dials), meshTime.Round(time.Millisecond),
		clusterTearDown.Round(time.Millisecond), rate(total, clusterTearDown), mib(slices.Max(peak)), netexecMem, len(leaks))
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tpods\tset-up\tpods/s\tp50\tp99\tmax\tteardown\tpods/s\tRSS start\tRSS all up\tRSS peak\tRSS end\t")
	for i, n := range c.Nodes {
		var l []time.Duration
		for _, p := range pods[i] {
			l = append(l, p.setUp)
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%.1f\t%v\t%v\t%v\t%v\t%.1f\t%s\t%s\t%s\t%s\t\n", n.Name, len(pods[i]),
			setUpWall[i].Round(time.Millisecond), rate(len(pods[i]), setUpWall[i]), pct(l, 50), pct(l, 99), pct(l, 100),
			tearDownWall[i].Round(time.Millisecond), rate(len(pods[i]), tearDownWall[i]),
			mib(rss.start[i]), mib(rssUp[i]), mib(peak[i]), mib(rssEnd[i]))
	}
	fmt.Fprintf(tw, "cluster\t%d\t%v\t%.1f\t%v\t%v\t%v\t%v\t%.1f\t\t\t\t\t\n", total,
		clusterSetUp.Round(time.Millisecond), rate(total, clusterSetUp), pct(lat, 50), pct(lat, 99), pct(lat, 100),
		clusterTearDown.Round(time.Millisecond), rate(total, clusterTearDown))
	_ = tw.Flush()
	t.Logf("per node (set-up and teardown: wall time of the node's calls; latency: one RunPodSandbox as its client saw it; RSS: the node's server, peak = VmHWM):\n%s", b.String())
}

// scaleSizes reads the knobs, or returns defaultScale when none is set.
func scaleSizes(t *testing.T) scaleSize {
	t.Helper()
	sz := scaleSize{
		nodes:     framework.EnvInt(t, envScaleNodes, defaultScale.nodes),
		pods:      framework.EnvInt(t, envScalePods, defaultScale.pods),
		clients:   framework.EnvInt(t, envScaleClients, defaultScale.clients),
		peers:     framework.EnvInt(t, envScalePeers, defaultScale.peers),
		maxSetups: framework.EnvInt(t, envScaleSetups, 0),
	}
	if sz.nodes < 2 {
		t.Fatalf("%s=%d: the mesh needs at least 2 nodes", envScaleNodes, sz.nodes)
	}
	return sz
}

// setupsName names a --max-parallel-setups value.
func setupsName(n int) string {
	if n == 0 {
		return "default (one per CPU)"
	}
	return strconv.Itoa(n)
}

// scaleCluster brings up the soak's own IPv4 cluster and takes it down at cleanup.
func scaleCluster(t *testing.T, sz scaleSize, network string) *localcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var args []string
	if sz.maxSetups > 0 {
		args = []string{"--max-parallel-setups", strconv.Itoa(sz.maxSetups)}
	}
	work := filepath.Join(t.TempDir(), "cluster")
	c, err := localcluster.Up(ctx, localcluster.Config{
		Nodes:     sz.nodes,
		IPFamily:  localcluster.IPv4,
		Network:   network,
		WorkDir:   work,
		Cnishim:   env.cnishim,
		CNIBinDir: env.cniBin,
		// Only the flannel network reads it.
		FlannelBinDir: env.flannelBin,
		// Apart from the suite's cluster (ck...) and any other run's.
		Prefix:    fmt.Sprintf("cs%d", os.Getpid()%100000),
		ServeArgs: args,
	})
	if err != nil {
		t.Fatalf("bring the scale cluster up: %v", err)
	}
	t.Logf("scale cluster up in %s (if this run is killed: hack/local-cluster.sh down --work-dir %s)", work, work)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.Log)
				if len(b) > 16<<10 {
					b = b[len(b)-16<<10:]
				}
				t.Logf("=== %s serve.log (end):\n%s", n.Name, b)
			}
		}
		if err := c.Down(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("take the scale cluster down: %v", err)
		}
	})
	return c
}

// gcThresh3 is the most IPv4 neighbour (ARP) entries the kernel holds. The table is one for
// every network namespace, and the sysctl exists in the root namespace only.
const gcThresh3 = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"

// roomInNeighbourTable makes room in the kernel's neighbour table for need more entries of the
// soak's namespaces, up at once. The mesh needs an entry in every pod for its gateway and one in
// every node for each of its pods (and for every other node): at 4 x 250 about 2,000, beyond the
// default limit of 1,024, which is then hit ("neighbour: arp_cache: neighbor table overflow!")
// and dials fail with "no route to host" in this soak and in anything else on the machine. The
// nodes of a real cluster each have a kernel of their own; here they share one, as kind's do.
// When the soak would take more than half the table, the limit is raised by need for the
// test's duration, and set back at cleanup unless someone changed it since.
func roomInNeighbourTable(t *testing.T, need int) {
	t.Helper()
	b, err := os.ReadFile(gcThresh3)
	if err != nil {
		t.Fatalf("neighbour table limit: %v", err)
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %q: %v", gcThresh3, b, err)
	}
	if need <= old/2 {
		return
	}
	set := strconv.Itoa(old + need)
	if err := os.WriteFile(gcThresh3, []byte(set), 0o644); err != nil {
		t.Fatalf("raise the neighbour table limit: %v", err)
	}
	t.Logf("the neighbour table limit %s raised from %d to %s for the soak's %d entries", gcThresh3, old, set, need)
	t.Cleanup(func() {
		if b, err := os.ReadFile(gcThresh3); err != nil || strings.TrimSpace(string(b)) != set {
			t.Logf("the neighbour table limit is %q now, not the soak's %s: left as it is", b, set)
			return
		}
		if err := os.WriteFile(gcThresh3, []byte(strconv.Itoa(old)), 0o644); err != nil {
			t.Errorf("set the neighbour table limit back to %d: %v", old, err)
		}
	})
}

// criClients opens n CRI connections to node's server, each a client of its own as a kubelet's
// would be, and closes them at cleanup.
func criClients(t *testing.T, node *localcluster.Node, n int) []runtimeapi.RuntimeServiceClient {
	t.Helper()
	var out []runtimeapi.RuntimeServiceClient
	for range n {
		conn, err := grpc.NewClient("unix://"+node.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("%s: CRI client: %v", node.Name, err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		out = append(out, runtimeapi.NewRuntimeServiceClient(conn))
	}
	return out
}

// onEveryNode runs fn on every node's pods through the node's clients, all nodes at once, and
// returns how long each node's calls took and how long they all took; fn's errors fail t.
func onEveryNode(t *testing.T, pods [][]*scalePod, rt [][]runtimeapi.RuntimeServiceClient, fn func(runtimeapi.RuntimeServiceClient, *scalePod) error) (perNode []time.Duration, all time.Duration) {
	perNode = make([]time.Duration, len(pods))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range pods {
		wg.Go(func() {
			nodeStart := time.Now()
			eachParallel(pods[i], rt[i], func(rt runtimeapi.RuntimeServiceClient, p *scalePod) {
				if err := fn(rt, p); err != nil {
					t.Error(err)
				}
			})
			perNode[i] = time.Since(nodeStart)
		})
	}
	wg.Wait()
	return perNode, time.Since(start)
}

// eachParallel runs fn on every item, one goroutine per worker, each taking the next item.
func eachParallel[W, I any](items []I, workers []W, fn func(W, I)) {
	next := make(chan I)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for it := range next {
				fn(w, it)
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
}

// runScalePod runs p's sandbox, timing the call, and reads its IP and netns.
func runScalePod(ctx context.Context, rt runtimeapi.RuntimeServiceClient, p *scalePod) error {
	cctx, cancel := context.WithTimeout(ctx, scaleRPCTimeout)
	defer cancel()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: p.name, Namespace: "cluster-scale", Uid: "uid-" + p.name},
		Hostname: p.name,
		Labels:   map[string]string{"app": p.name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
	t0 := time.Now()
	resp, err := rt.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	p.setUp = time.Since(t0)
	if err != nil {
		return fmt.Errorf("run pod %s: %w", p, err)
	}
	p.id = resp.GetPodSandboxId()
	st, err := rt.PodSandboxStatus(cctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	if err != nil {
		return fmt.Errorf("pod %s: status: %w", p, err)
	}
	if s := st.GetStatus().GetState(); s != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("pod %s: state %v; want ready", p, s)
	}
	var info struct {
		NetNSPath string `json:"netnsPath"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.NetNSPath == "" {
		return fmt.Errorf("pod %s: no netns path in the status's info (%v): %q", p, err, st.GetInfo()["info"])
	}
	p.netns = info.NetNSPath
	ips := []string{st.GetStatus().GetNetwork().GetIp()}
	for _, a := range st.GetStatus().GetNetwork().GetAdditionalIps() {
		ips = append(ips, a.GetIp())
	}
	if len(ips) != 1 {
		return fmt.Errorf("pod %s: IPs %v; want one IPv4", p, ips)
	}
	if p.ip, err = netip.ParseAddr(ips[0]); err != nil || !p.ip.Is4() {
		return fmt.Errorf("pod %s: IP %q; want an IPv4 address", p, ips[0])
	}
	return nil
}

// removeScalePod stops and removes p's sandbox, as the kubelet does when a pod goes.
func removeScalePod(ctx context.Context, rt runtimeapi.RuntimeServiceClient, p *scalePod) error {
	ctx, cancel := context.WithTimeout(ctx, scaleRPCTimeout)
	defer cancel()
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("stop pod %s: %w", p, err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("remove pod %s: %w", p, err)
	}
	return nil
}

// checkScaleIPs checks that every pod's IP lies in its node's pod CIDR and that no two pods
// share one.
func checkScaleIPs(t *testing.T, c *localcluster.Cluster, pods [][]*scalePod) {
	t.Helper()
	owner := map[netip.Addr]*scalePod{}
	for i, ps := range pods {
		for _, p := range ps {
			if cidr := c.Nodes[i].PodCIDRs[0]; !cidr.Contains(p.ip) {
				t.Errorf("pod %s: IP %s not in its node's pod CIDR %s", p, p.ip, cidr)
			}
			if o, dup := owner[p.ip]; dup {
				t.Errorf("pods %s and %s share IP %s", o, p, p.ip)
			}
			owner[p.ip] = p
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// meshPlan picks, for every pod, peers distinct pods on other nodes (all of them if there are
// fewer), and returns the (from, to) dials.
func meshPlan(rng *rand.Rand, pods [][]*scalePod, peers int) [][2]*scalePod {
	var dials [][2]*scalePod
	for i, ps := range pods {
		var others []*scalePod
		for j, qs := range pods {
			if j != i {
				others = append(others, qs...)
			}
		}
		for _, p := range ps {
			for _, k := range rng.Perm(len(others))[:min(peers, len(others))] {
				dials = append(dials, [2]*scalePod{p, others[k]})
			}
		}
	}
	return dials
}

// rssWatch samples every node server's VmRSS until stopped.
type rssWatch struct {
	c     *localcluster.Cluster
	start []int64 // kB at the start
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	peak  []int64 // the largest VmRSS sampled, kB
	errs  []error // the first error of each node
}

// watchRSS starts sampling the servers' RSS every 100ms; stop ends it (at cleanup at the
// latest).
func watchRSS(t *testing.T, c *localcluster.Cluster) *rssWatch {
	t.Helper()
	w := &rssWatch{c: c, stopc: make(chan struct{}), done: make(chan struct{}), peak: make([]int64, len(c.Nodes)), errs: make([]error, len(c.Nodes))}
	w.start = w.now()
	go func() {
		defer close(w.done)
		for {
			w.now()
			select {
			case <-w.stopc:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		w.stop()
		if err := errors.Join(w.errs...); err != nil {
			t.Errorf("server RSS: %v", err)
		}
	})
	return w
}

// now samples every server's VmRSS, in kB, folding it into the peaks.
func (w *rssWatch) now() []int64 {
	out := make([]int64, len(w.c.Nodes))
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, n := range w.c.Nodes {
		st, err := procStatus(n.ServerPID())
		if err != nil {
			if w.errs[i] == nil { // the first error of each node tells; every 100ms after would not
				w.errs[i] = fmt.Errorf("%s: %w", n.Name, err)
			}
			continue
		}
		out[i] = st["VmRSS"]
		w.peak[i] = max(w.peak[i], st["VmRSS"], st["VmHWM"])
	}
	return out
}

// stop ends the sampling and returns every server's peak RSS in kB: the larger of the sampled
// VmRSS and the kernel's high-water mark VmHWM.
func (w *rssWatch) stop() []int64 {
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.done
	w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.peak)
}

// procStatus reads the kB fields of /proc/<pid>/status (VmRSS, VmHWM, RssAnon...).
func procStatus(pid int) (map[string]int64, error) {
	if pid == 0 {
		return nil, errors.New("no server runs")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}

// netexecMemory sums the RSS and the anonymous RSS (what is the process's own, its binary's
// pages being shared) of the pods' netexec processes.
func netexecMemory(t *testing.T, pods []*scalePod) string {
	t.Helper()
	var rss, anon int64
	for _, p := range pods {
		st, err := procStatus(p.ne.PID())
		if err != nil {
			t.Errorf("netexec in %s: %v", p, err)
			continue
		}
		rss += st["VmRSS"]
		anon += st["RssAnon"]
	}
	return fmt.Sprintf("%s in %d processes (%s anonymous)", mib(rss), len(pods), mib(anon))
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)].Round(time.Millisecond)
}

// rate is n per second of d.
func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// mib prints kB as MiB.
func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
