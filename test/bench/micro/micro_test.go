//go:build linux

package micro

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/pluginenv"
	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/bench/internal/benchtest"
	"github.com/cnishim/cnishim/test/bench/internal/fakeexec"
	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/prometheus/client_golang/prometheus"
)

// conflist11 is a CNI 1.1 network of the real plugins, for STATUS. Nothing is attached to
// it: STATUS touches no pod.
const conflist11 = `{
  "cniVersion": "1.1.0",
  "name": "cnibench-status",
  "plugins": [
    {"type": "bridge", "bridge": "cnibstat0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.196.0.0/16"}]], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`

func writeConf(tb testing.TB) (confDir, cacheDir string) {
	tb.Helper()
	root := tb.TempDir()
	confDir, cacheDir = filepath.Join(root, "net.d"), filepath.Join(root, "cache")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := fmt.Sprintf(conflist11, filepath.Join(root, "ipam"))
	if err := os.WriteFile(filepath.Join(confDir, "10-status.conflist"), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	return confDir, cacheDir
}

func startPlugin(tb testing.TB, opts ...cninetwork.Option) *cninetwork.Plugin {
	tb.Helper()
	opts = append(opts, cninetwork.WithRegisterer(prometheus.NewRegistry()))
	p, err := cninetwork.New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Run(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cancel()
		_ = p.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.Status(ctx)
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("plugin not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkStatus compares the readiness call a runtime makes on every CRI Status: cnishim
// answers from the STATUS result its background poller cached, up to
// poll interval (5s) old; go-cni execs STATUS of every plugin of the chain on
// each call. Target for cnishim: p99 ≤ 10 µs.
//
// The Plugin has no call that runs STATUS now, so the like-for-like row,
// impl=libcni-cnishim-exec, is what the poller runs per probe: libcni's GetStatusNetworkList
// on the same conflist through libcni's executor with the environment trimmed by pluginenv,
// as the Plugin runs plugins (its own executor differs only in reading their CPU time).
func BenchmarkStatus(b *testing.B) {
	binDir := benchtest.CNIBinDir(b)
	b.Run("impl=cnishim", func(b *testing.B) {
		confDir, cacheDir := writeConf(b)
		p := startPlugin(b, cninetwork.WithConfDir(confDir), cninetwork.WithBinDirs(binDir), cninetwork.WithCacheDir(cacheDir))
		ctx := b.Context()
		lat := benchtest.NewLatencies(1 << 20)
		b.ReportAllocs()
		for b.Loop() {
			t := time.Now()
			err := p.Status(ctx)
			lat.Add(time.Since(t))
			if err != nil {
				b.Fatal(err)
			}
		}
		lat.Report(b)
	})
	b.Run("impl=libcni-cnishim-exec", func(b *testing.B) {
		confDir, cacheDir := writeConf(b)
		list, err := libcni.ConfListFromFile(filepath.Join(confDir, "10-status.conflist"))
		if err != nil {
			b.Fatal(err)
		}
		exec := pluginenv.Exec{Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}}}
		cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, exec)
		ctx := b.Context()
		lat := benchtest.NewLatencies(1 << 20)
		b.ReportAllocs()
		for b.Loop() {
			t := time.Now()
			err := cni.GetStatusNetworkList(ctx, list)
			lat.Add(time.Since(t))
			if err != nil {
				b.Fatal(err)
			}
		}
		lat.Report(b)
	})
	b.Run("impl=go-cni", func(b *testing.B) {
		confDir, _ := writeConf(b)
		c, err := gocni.New(gocni.WithMinNetworkCount(2), gocni.WithPluginConfDir(confDir), gocni.WithPluginDir([]string{binDir}))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Load(gocni.WithLoNetwork, gocni.WithDefaultConf); err != nil {
			b.Fatal(err)
		}
		lat := benchtest.NewLatencies(1 << 20)
		b.ReportAllocs()
		for b.Loop() {
			t := time.Now()
			err := c.Status()
			lat.Add(time.Since(t))
			if err != nil {
				b.Fatal(err)
			}
		}
		lat.Report(b)
	})
}

// BenchmarkGetPodNetworkStatus asks for the status of one of 1,000 pods set up through a
// fake executor (no plugin runs; the figure is the shim's own). Target: ≤ 2 µs.
func BenchmarkGetPodNetworkStatus(b *testing.B) {
	const pods = 1000
	root := b.TempDir()
	binDir := filepath.Join(root, "bin")
	if err := fakeexec.InstallStubs(binDir, "bridge", "host-local", "portmap"); err != nil {
		b.Fatal(err)
	}
	confDir, cacheDir := writeConf(b)
	p := startPlugin(b, cninetwork.WithConfDir(confDir), cninetwork.WithBinDirs(binDir), cninetwork.WithCacheDir(cacheDir),
		seam.Exec(&fakeexec.Exec{}).(cninetwork.Option), cninetwork.WithoutLoopback())
	ctx := b.Context()
	all := make([]*cninetwork.Pod, pods)
	for i := range all {
		all[i] = &cninetwork.Pod{
			SandboxID: fmt.Sprintf("%064x", i+1), Name: fmt.Sprintf("status-%d", i), Namespace: "cnibench",
			UID: fmt.Sprintf("%032x", i+1),
			// A real namespace path; with loopback off and a fake executor nothing enters it.
			NetNS: "/proc/self/ns/net",
		}
		if _, err := p.SetUpPod(ctx, all[i]); err != nil {
			b.Fatal(err)
		}
	}
	lat := benchtest.NewLatencies(1 << 20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pod := all[i%pods]
		i++
		t := time.Now()
		st, err := p.GetPodNetworkStatus(ctx, pod)
		lat.Add(time.Since(t))
		if err != nil || len(st.IPs) == 0 {
			b.Fatalf("pod %s: status %v, %v", pod.Name, st, err)
		}
	}
	lat.Report(b)
}
