package cninetwork

import (
	"runtime"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"github.com/containernetworking/cni/libcni"
)

// benchPod is the pod both sides of the benchmark set up: one host port, so portmap gets a
// capability arg.
func benchPod() *Pod {
	pod := testPod("bench")
	pod.PortMappings = []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}
	return pod
}

// libcniBench runs the baseline: the same chain, pod and fake plugins through raw libcni
// AddNetworkList and DelNetworkList.
type libcniBench struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
}

func newLibcniBench(b *testing.B) *libcniBench {
	fe := newFakeExec()
	fe.quiet = true
	pod := benchPod()
	args, err := cniargs.Kubernetes(cniargs.Pod{SandboxID: pod.SandboxID, Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID})
	if err != nil {
		b.Fatal(err)
	}
	return &libcniBench{
		cni:  libcni.NewCNIConfigWithCacheDir([]string{"/opt/cni/bin"}, b.TempDir(), fe),
		list: network(b, bridgeNet).Config,
		rt: &libcni.RuntimeConf{
			ContainerID: pod.SandboxID, NetNS: pod.NetNS, IfName: "eth0", Args: args,
			CapabilityArgs: map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}},
		},
	}
}

func (l *libcniBench) once(b *testing.B) {
	ctx := b.Context()
	if _, err := l.cni.AddNetworkList(ctx, l.list, l.rt); err != nil {
		b.Fatal(err)
	}
	if err := l.cni.DelNetworkList(ctx, l.list, l.rt); err != nil {
		b.Fatal(err)
	}
}

// pairMeasure runs a and b n times each, alternating in chunks so that the machine's drift
// (other work on a noisy machine) falls on both alike, and returns each one's time and
// allocations per run.
func pairMeasure(n int, a, b func()) (aNs, aAllocs, bNs, bAllocs float64) {
	const chunk = 20
	var ta, tb time.Duration
	var ma, mb uint64
	var ms runtime.MemStats
	run := func(f func(), k int, t *time.Duration, m *uint64) {
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		start := time.Now()
		for range k {
			f()
		}
		*t += time.Since(start)
		runtime.ReadMemStats(&ms)
		*m += ms.Mallocs - before
	}
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		run(a, k, &ta, &ma)
		run(b, k, &tb, &mb)
	}
	fn := float64(n)
	return float64(ta.Nanoseconds()) / fn, float64(ma) / fn, float64(tb.Nanoseconds()) / fn, float64(mb) / fn
}

// BenchmarkSetUpTearDown measures SetUpPod+TearDownPod of a three-plugin chain on a fake exec
// (its ns/op and allocs/op), and reports it as a ratio to raw libcni
// AddNetworkList+DelNetworkList of the same chain and pod on the same fake, both run b.N times
// in the same benchmark, interleaved, with the timer stopped: the cost of everything the Plugin adds (checks,
// capability args, locks, admission, cache reads, result parsing, the env filter).
func BenchmarkSetUpTearDown(b *testing.B) {
	fe, src := newFakeExec(), newFakeSource()
	fe.quiet = true
	src.publish(nil, network(b, bridgeNet))
	p := newTestPlugin(b, fe, src)
	pod := benchPod()
	ctx := b.Context()
	plugin := func() {
		if _, err := p.SetUpPod(ctx, pod); err != nil {
			b.Fatal(err)
		}
		if err := p.TearDownPod(ctx, pod); err != nil {
			b.Fatal(err)
		}
	}
	raw := newLibcniBench(b)

	b.StopTimer()
	// Both measured the same way, interleaved, for the ratio; then the Plugin once more under
	// the timer for the standard ns/op and allocs/op.
	rawNs, rawAllocs, pNs, pAllocs := pairMeasure(b.N, func() { raw.once(b) }, plugin)
	b.ReportAllocs()
	b.StartTimer()
	for range b.N {
		plugin()
	}
	b.StopTimer()
	b.ReportMetric(rawNs, "libcni-ns/op")
	b.ReportMetric(rawAllocs, "libcni-allocs/op")
	b.ReportMetric(pNs/rawNs, "ns-ratio")
	b.ReportMetric(pAllocs/rawAllocs, "allocs-ratio")
}

// BenchmarkSetUpSeveralNetworks measures SetUpPod+TearDownPod of a pod on three one-plugin
// networks (the default and two extra ones) whose plugins each take 10ms per ADD and DEL (its
// ns/op), and reports it as a ratio to the same for a pod on the default network alone, both
// run b.N times, interleaved, with the timer stopped. The three chains run side by side: the
// ratio is 1 when they overlap fully, 3 if they ran one after another.
func BenchmarkSetUpSeveralNetworks(b *testing.B) {
	const d = 10 * time.Millisecond
	fe, src := newFakeExec(), newFakeSource()
	fe.quiet = true
	src.publish(nil, network(b, otherNet),
		network(b, `{"cniVersion":"1.0.0","name":"net-c","plugins":[{"type":"macvlan"}]}`),
		network(b, `{"cniVersion":"1.0.0","name":"net-d","plugins":[{"type":"ipvlan"}]}`))
	for _, pl := range []string{"ptp", "macvlan", "ipvlan"} {
		fe.set(pl, "ADD", reply{sleep: d})
		fe.set(pl, "DEL", reply{sleep: d})
	}
	p := newTestPlugin(b, fe, src)
	ctx := b.Context()
	once := func(pod *Pod) func() {
		return func() {
			if _, err := p.SetUpPod(ctx, pod); err != nil {
				b.Fatal(err)
			}
			if err := p.TearDownPod(ctx, pod); err != nil {
				b.Fatal(err)
			}
		}
	}
	three, one := testPod("three"), testPod("one")
	three.ExtraNetworks = []NetworkSelection{{Name: "net-c"}, {Name: "net-d"}}
	b.StopTimer()
	oneNs, _, threeNs, _ := pairMeasure(b.N, once(one), once(three))
	b.StartTimer()
	for range b.N {
		once(three)()
	}
	b.StopTimer()
	b.ReportMetric(oneNs, "one-network-ns/op")
	b.ReportMetric(threeNs/oneNs, "ratio")
}
