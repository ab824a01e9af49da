package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

func TestMain(m *testing.M) { os.Exit(plugintest.Main(m)) }

// node is a configuration directory, a plugin directory holding cnitest as "fake" and
// "loopback", and the cache and state directories of one CNI.
type node struct {
	conf, bin, cache, record string
	// netns is a pod's network namespace: that of a sleeping process of the test's own.
	netns string
}

func newNode(t *testing.T) *node {
	t.Helper()
	root := t.TempDir()
	n := &node{
		conf:   filepath.Join(root, "net.d"),
		bin:    filepath.Join(root, "bin"),
		cache:  filepath.Join(root, "cache"),
		record: filepath.Join(root, "calls.jsonl"),
		netns:  newNetns(t),
	}
	for _, d := range []string{n.conf, n.bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plugintest.MustInstallAs(t, n.bin, "fake", "other", "loopback")
	for _, p := range []string{"fake", "other"} {
		plugintest.MustWriteBehavior(t, plugintest.SidecarPath(filepath.Join(n.bin, p)), plugintest.Behavior{
			Record: n.record,
			Commands: map[string]plugintest.Action{"ADD": {
				Interfaces: []plugintest.Interface{{Name: "veth" + p, Mac: "aa:bb:cc:dd:ee:01"}, {Name: "eth0", Sandbox: "/netns"}},
				IPs:        []plugintest.IP{{Address: "10.22.0.5/24", Gateway: "10.22.0.1", Interface: ptr(1)}},
			}},
		})
	}
	plugintest.MustWriteBehavior(t, plugintest.SidecarPath(filepath.Join(n.bin, "loopback")), plugintest.Behavior{Record: n.record})
	return n
}

func ptr(i int) *int { return &i }

// newNetns returns the path of a new network namespace, held by a sleeping process the test
// kills at its end. The process is in a user namespace of its own, so that a user who is not
// root can make one too.
func newNetns(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--map-root-user", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { l, err := os.Readlink(path); return err == nil && l != self })
	return path
}

// write puts a conflist of the given plugin type into the configuration directory, atomically.
func (n *node) write(t *testing.T, file, name, typ string) {
	t.Helper()
	body := `{"cniVersion": "1.0.0", "name": "` + name + `", "plugins": [{"type": "` + typ + `"}]}`
	tmp := filepath.Join(n.conf, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(n.conf, file)); err != nil {
		t.Fatal(err)
	}
}

// open returns a CNI as containerd makes and loads one, closed at the end of the test.
func (n *node) open(t *testing.T, opts ...Opt) CNI {
	t.Helper()
	opts = append([]Opt{
		WithMinNetworkCount(2), WithPluginConfDir(n.conf), WithPluginMaxConfNum(1),
		WithPluginDir([]string{n.bin}), WithCacheDir(n.cache),
	}, opts...)
	c, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.(io.Closer).Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// records returns the commands the plugins saw, as "plugin COMMAND ifname".
func (n *node) records(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(n.record); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var out []string
	for _, r := range plugintest.MustReadRecords(t, n.record) {
		if r.Command == "VERSION" || r.Command == "STATUS" {
			continue
		}
		var ifName string
		for _, e := range r.Env {
			if v, ok := strings.CutPrefix(e, "CNI_IFNAME="); ok {
				ifName = v
			}
		}
		out = append(out, filepath.Base(r.Binary)+" "+r.Command+" "+ifName)
	}
	return out
}

// waitStatus polls Status until it is nil (want true) or not (want false).
func waitStatus(t *testing.T, c CNI, want bool) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Status()
		if (err == nil) == want {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status stayed %v, want ready=%t", err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// containerd's use: Load(WithLoNetwork, WithDefaultConf), Setup returns eth0's IP, Remove with
// the netns path and then with an empty one, as containerd calls it at stop and at remove.
func TestContainerdLifecycle(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-net.conflist", "net", "fake")
	c := n.open(t)
	if err := c.Status(); !IsCNINotInitialized(err) {
		t.Fatalf("Status before Load = %v, want ErrCNINotInitialized", err)
	}
	if err := c.Load(WithLoNetwork, WithDefaultConf); err != nil {
		t.Fatal(err)
	}
	if err := c.Status(); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "web", "K8S_POD_INFRA_CONTAINER_ID": "s1", "K8S_POD_UID": "u1", "IgnoreUnknown": "1"}
	res, err := c.Setup(t.Context(), "s1", n.netns, WithLabels(labels),
		WithCapability("io.kubernetes.cri.pod-annotations", map[string]string{"a": "b"}),
		WithCapabilityPortMap([]PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}))
	if err != nil {
		t.Fatal(err)
	}
	eth0, ok := res.Interfaces["eth0"]
	if !ok || len(eth0.IPConfigs) != 1 || eth0.IPConfigs[0].IP.String() != "10.22.0.5" || eth0.IPConfigs[0].Gateway.String() != "10.22.0.1" {
		t.Fatalf("Interfaces[eth0] = %+v, want 10.22.0.5 via 10.22.0.1", eth0)
	}
	if v, ok := res.Interfaces["vethfake"]; !ok || v.Mac != "aa:bb:cc:dd:ee:01" {
		t.Errorf("host interface missing from the result: %+v", res.Interfaces)
	}
	if len(res.Raw()) != 1 {
		t.Errorf("Raw() has %d results, want 1", len(res.Raw()))
	}
	for _, path := range []string{n.netns, "", ""} {
		if err := c.Remove(t.Context(), "s1", path, WithLabels(labels)); err != nil {
			t.Fatalf("Remove(%q): %v", path, err)
		}
	}
	got := strings.Join(n.records(t), ", ")
	if want := "loopback ADD lo, fake ADD eth0, fake DEL eth0, loopback DEL lo"; got != want {
		t.Errorf("plugin calls = %s, want %s", got, want)
	}
}

// One bad or half-written file does not empty the networks: go-cni's Load fails on the first
// file that does not parse; here the next valid file is the default and pods keep being set up.
func TestLoadBadFileFirst(t *testing.T) {
	n := newNode(t)
	n.write(t, "20-net.conflist", "net", "fake")
	c := n.open(t)
	if err := c.Load(WithLoNetwork, WithDefaultConf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.conf, "10-broken.conflist"), []byte(`{"cniVersion": "1.0.0", "name": `), 0o644); err != nil {
		t.Fatal(err)
	}
	// Once the watcher has skipped it, the broken file is the one a Load reads first.
	waitFor(t, func() bool {
		skipped := c.(*libcni).cur.Load().plugin.Snapshot().Skipped
		return len(skipped) == 1 && filepath.Base(skipped[0].File) == "10-broken.conflist"
	})
	if err := c.Load(WithLoNetwork, WithDefaultConf); err != nil {
		t.Fatalf("Load with a broken file first: %v", err)
	}
	if err := c.Status(); err != nil {
		t.Fatalf("Status with a broken file first: %v", err)
	}
	if _, err := c.Setup(t.Context(), "s1", n.netns); err != nil {
		t.Fatal(err)
	}
	if cfg := c.GetConfig(); len(cfg.Networks) != 2 || cfg.Networks[1].Config.Name != "net" || cfg.Networks[1].IFName != "eth0" || cfg.Networks[0].IFName != "lo" {
		t.Errorf("GetConfig networks = %+v, want lo and net on eth0", cfg.Networks)
	}
}

// An empty directory: Load wraps ErrLoad and Status says not ready; a file written later makes
// the CNI ready without another Load, and the directory deleted and re-created comes back.
func TestLoadDirectoryComesBack(t *testing.T) {
	n := newNode(t)
	c := n.open(t)
	err := c.Load(WithLoNetwork, WithDefaultConf)
	if !errors.Is(err, ErrLoad) || !IsCNINotInitialized(err) {
		t.Fatalf("Load of an empty directory = %v, want ErrLoad and ErrCNINotInitialized", err)
	}
	if err := c.Status(); !IsCNINotInitialized(err) || !errors.Is(err, cninetwork.ErrNotReady) {
		t.Fatalf("Status = %v, want ErrCNINotInitialized and ErrNotReady", err)
	}
	n.write(t, "10-net.conflist", "net", "fake")
	waitStatus(t, c, true)
	if err := os.RemoveAll(n.conf); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, false)
	if err := os.MkdirAll(n.conf, 0o755); err != nil {
		t.Fatal(err)
	}
	n.write(t, "10-net.conflist", "net", "fake")
	waitStatus(t, c, true)
	if _, err := c.Setup(t.Context(), "s1", n.netns); err != nil {
		t.Fatal(err)
	}
}

// A pod is torn down with the configuration it was set up with, even after the default
// network changed, and even while no network is ready.
func TestRemoveWithOwnConfig(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-net.conflist", "net", "fake")
	c := n.open(t)
	if err := c.Load(WithLoNetwork, WithDefaultConf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Setup(t.Context(), "s1", n.netns); err != nil {
		t.Fatal(err)
	}
	n.write(t, "10-net.conflist", "net2", "other")
	waitFor(t, func() bool { cfg := c.GetConfig(); return cfg.Networks[1].Config.Name == "net2" })
	if err := os.Remove(filepath.Join(n.conf, "10-net.conflist")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, false)
	if err := c.Remove(t.Context(), "s1", ""); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(n.records(t), ", ")
	if want := "loopback ADD lo, fake ADD eth0, fake DEL eth0, loopback DEL lo"; got != want {
		t.Errorf("plugin calls = %s, want %s", got, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WithPluginMaxConfNum 2 attaches the directory's second network on eth1, as go-cni does; the
// NPWG networks annotation attaches one more, which go-cni cannot.
func TestMoreNetworks(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-net.conflist", "net", "fake")
	n.write(t, "20-other.conflist", "other", "other")
	n.write(t, "30-third.conflist", "third", "fake")
	c := n.open(t, WithPluginMaxConfNum(2))
	if err := c.Load(WithLoNetwork, WithDefaultConf); err != nil {
		t.Fatal(err)
	}
	if cfg := c.GetConfig(); len(cfg.Networks) != 3 || cfg.Networks[2].IFName != "eth1" || cfg.Networks[2].Config.Name != "other" {
		t.Fatalf("GetConfig networks = %+v, want lo, net on eth0, other on eth1", cfg.Networks)
	}
	ann := map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name": "third", "interface": "net9"}]`}
	if _, err := c.Setup(t.Context(), "s1", n.netns, WithCapability("io.kubernetes.cri.pod-annotations", ann)); err != nil {
		t.Fatal(err)
	}
	var adds []string
	for _, r := range n.records(t) {
		if strings.Contains(r, " ADD ") {
			adds = append(adds, r)
		}
	}
	if got, want := strings.Join(adds, ", "), "eth0 eth1 net9"; !strings.Contains(got, "fake ADD eth0") || !strings.Contains(got, "other ADD eth1") || !strings.Contains(got, "fake ADD net9") {
		t.Errorf("ADDs = %s, want one on each of %s", got, want)
	}
	bad := map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name": "nosuch"}]`}
	if _, err := c.Setup(t.Context(), "s2", n.netns, WithCapability("io.kubernetes.cri.pod-annotations", bad)); !errors.Is(err, cninetwork.ErrInvalidPod) {
		t.Errorf("Setup on an unknown network = %v, want ErrInvalidPod", err)
	}
}

// Networks given as bytes (nerdctl's way) are set up on eth0 and on.
func TestConfListBytes(t *testing.T) {
	n := newNode(t)
	c := n.open(t, WithMinNetworkCount(1))
	if err := c.Load(WithConfListBytes([]byte(`{"cniVersion": "1.0.0", "name": "mem", "plugins": [{"type": "fake"}]}`))); err != nil {
		t.Fatal(err)
	}
	if err := c.Status(); err != nil {
		t.Fatal(err)
	}
	res, err := c.Setup(t.Context(), "s1", n.netns)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interfaces["eth0"].IPConfigs) != 1 {
		t.Errorf("Interfaces[eth0] = %+v, want its IP", res.Interfaces["eth0"])
	}
	// Other bytes: the first bytes' directory goes once their Plugin is replaced; the pod set
	// up with them is torn down from its record.
	first := c.(*libcni).cur.Load().confDir
	if err := c.Load(WithConfListBytes([]byte(`{"cniVersion": "1.0.0", "name": "mem2", "plugins": [{"type": "other"}]}`))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the first bytes' directory %s is left after a Load of others: %v", first, err)
	}
	if err := c.Remove(t.Context(), "s1", n.netns); err != nil {
		t.Fatal(err)
	}
	if got := n.records(t); len(got) < 2 || got[len(got)-1] != "fake DEL eth0" {
		t.Errorf("plugin calls = %v, want the pod's DEL through its own network's plugin last", got)
	}
	if err := c.Load(WithConfListBytes([]byte(`{"name": `))); !errors.Is(err, ErrLoad) {
		t.Errorf("Load of broken bytes = %v, want ErrLoad", err)
	}
	if err := c.Load(WithDefaultConf, WithConfListBytes([]byte(`{"cniVersion": "1.0.0", "name": "mem", "plugins": [{"type": "fake"}]}`))); !IsInvalidConfig(err) {
		t.Errorf("Load mixing the directory and bytes = %v, want ErrInvalidConfig", err)
	}
}

// The conversion of go-cni's arguments into the Plugin's pod.
func TestNamespacePod(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []NamespaceOpts
		want func(p *cninetwork.Pod) string // "" when right
	}{{
		name: "labels",
		opts: []NamespaceOpts{WithLabels(map[string]string{"K8S_POD_NAMESPACE": "ns", "K8S_POD_NAME": "n", "K8S_POD_UID": "u"})},
		want: func(p *cninetwork.Pod) string {
			if p.Namespace != "ns" || p.Name != "n" || p.UID != "u" {
				return "identity not taken from the labels"
			}
			return ""
		},
	}, {
		name: "capabilities",
		opts: []NamespaceOpts{
			WithCapabilityPortMap([]PortMapping{{HostPort: 80, ContainerPort: 8080, Protocol: "udp", HostIP: "127.0.0.1"}}),
			WithCapabilityDNS(DNS{Servers: []string{"10.0.0.10"}, Searches: []string{"svc"}}),
			WithCapabilityCgroupPath("/kubepods/pod1"),
		},
		want: func(p *cninetwork.Pod) string {
			if len(p.PortMappings) != 1 || p.PortMappings[0] != (cninetwork.PortMapping{HostPort: 80, ContainerPort: 8080, Protocol: "udp", HostIP: "127.0.0.1"}) {
				return "port mappings"
			}
			if p.DNS == nil || p.DNS.Servers[0] != "10.0.0.10" || p.DNS.Searches[0] != "svc" {
				return "dns"
			}
			if p.CgroupParent != "/kubepods/pod1" {
				return "cgroup path"
			}
			return ""
		},
	}, {
		name: "bandwidth without annotations",
		opts: []NamespaceOpts{WithCapabilityBandWidth(BandWidth{IngressRate: 1000000, EgressRate: 2000000})},
		want: func(p *cninetwork.Pod) string {
			if p.Annotations[annotationIngressBandwidth] != "1000000" || p.Annotations[annotationEgressBandwidth] != "2000000" {
				return "bandwidth not carried as annotations"
			}
			return ""
		},
	}, {
		name: "bandwidth annotations win",
		opts: []NamespaceOpts{
			WithCapability(capPodAnnotations, map[string]string{annotationIngressBandwidth: "1M"}),
			WithCapabilityBandWidth(BandWidth{IngressRate: 5}),
		},
		want: func(p *cninetwork.Pod) string {
			if p.Annotations[annotationIngressBandwidth] != "1M" {
				return "the pod's annotation was replaced"
			}
			return ""
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := newNamespace("s1", "/netns", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ns.pod(DefaultPrefix, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.SandboxID != "s1" || p.NetNS != "/netns" {
				t.Errorf("pod = %+v, want sandbox s1 in /netns", p)
			}
			if msg := tc.want(p); msg != "" {
				t.Errorf("%s: pod = %+v", msg, p)
			}
		})
	}
	bad := []NamespaceOpts{
		WithCapability(capPortMappings, "not a list"),
		WithCapability(capPodAnnotations, map[string]string{"k8s.v1.cni.cncf.io/networks": "[{"}),
		WithCapability(capDNS, func() {}),
	}
	for i, o := range bad {
		ns, err := newNamespace("s1", "/netns", o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ns.pod(DefaultPrefix, nil); !errors.Is(err, cninetwork.ErrInvalidPod) || !strings.Contains(err.Error(), "s1") {
			t.Errorf("bad arg %d: err = %v, want ErrInvalidPod naming the sandbox", i, err)
		}
	}
}

// Setup and Remove before any Load fail as go-cni's do; the context bounds Setup.
func TestNotLoaded(t *testing.T) {
	n := newNode(t)
	c := n.open(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := c.Setup(ctx, "s1", n.netns); !IsCNINotInitialized(err) {
		t.Errorf("Setup = %v, want ErrCNINotInitialized", err)
	}
	if err := c.Remove(ctx, "s1", ""); !IsCNINotInitialized(err) {
		t.Errorf("Remove = %v, want ErrCNINotInitialized", err)
	}
	if cfg := c.GetConfig(); cfg.PluginConfDir != n.conf || cfg.Prefix != "eth" || cfg.PluginMaxConfNum != 1 || len(cfg.Networks) != 0 {
		t.Errorf("GetConfig = %+v", cfg)
	}
}
