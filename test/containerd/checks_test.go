//go:build linux

package containerd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/framework"
)

// checks are the suite's checks, in the order docs/containerd.md lists them.
var checks = []framework.Check{
	{Name: "pod networking", Run: onNode(checkPodNetworking)},
	{Name: "stop and remove leave nothing", Run: onNode(checkStopRemove)},
	{Name: "restart keeps pods", Run: onNode(checkRestart)},
	{Name: "SIGKILL amid a pod-start storm", Run: onNode(checkKillStorm)},
	{Name: "conf dir deleted and re-created", Run: onNode(checkConfDirRecreated)},
	{Name: "invalid file sorted first", Run: onNode(checkInvalidFirst),
		StockIssue: "go-cni's Load fails on the first file that does not parse (opts.go loadFromConfDir), resetting every network: one bad file takes the node's network down"},
	{Name: "plugin reports unavailable through STATUS", Run: onNode(checkStatus)},
	{Name: "second network through the NPWG annotation", CnishimOnly: true, Run: onNode(checkAnnotationNetwork)},
}

// onNode runs a check on a fresh node of the build.
func onNode(run func(t *testing.T, n *node) error) func(t *testing.T, build string) error {
	return func(t *testing.T, build string) error { return run(t, newNode(t, build)) }
}

// TestContainerdChecks runs every check on both builds and logs the side-by-side table
// (framework.RunSideBySide).
func TestContainerdChecks(t *testing.T) {
	framework.RunSideBySide(t, "stock containerd", "containerd with cnishim", checks)
}

// node is one containerd of a build on a network of its own.
type node struct {
	*framework.Containerd
	k int
}

var slots = framework.Slots{Procs: 16, Per: 12}

// newNode starts a containerd of build on a bridge network of its own.
func newNode(t *testing.T, build string, opts ...func(*framework.ContainerdOptions)) *node {
	t.Helper()
	k := slots.Next()
	o := framework.ContainerdOptions{
		Build: build,
		Net:   framework.NewNet(t, "ctdnet", fmt.Sprintf("cnictd%d", k), fmt.Sprintf("10.150.%d.0/24", k%250+1)),
	}
	for _, f := range opts {
		f(&o)
	}
	return &node{Containerd: framework.StartContainerd(t, env, build, o), k: k}
}

// hostPort is a host port of the node's own.
func (n *node) hostPort() int32 { return int32(33000 + n.k) }

// state is what the node's pods can leave behind (framework.Containerd.NetState), the rules
// holding one of the sandbox IDs or the node's hostPort.
func (n *node) state(ids ...string) leakcheck.State {
	return n.NetState(append(ids, fmt.Sprintf("dport %d", n.hostPort()))...)
}

// leaks returns what the node's pods left: IPs, cache entries, veths, rules, netns mounts.
func (n *node) leaks(before leakcheck.State, ids ...string) error {
	return n.NetLeaks(before, append(ids, fmt.Sprintf("dport %d", n.hostPort()))...)
}

// podWithWeb runs a pod whose container serves HTTP on port 80 and returns the pod's ID and IP.
func (n *node) podWithWeb(t *testing.T, p framework.PodSpec) (string, net.IP) {
	t.Helper()
	id := n.RunPod(p)
	n.RunContainer(id, p, "web", framework.WebImage)
	return id, n.PodIP(id)
}

// checkPodNetworking: pods talk pod to pod from inside their containers, the host reaches a
// pod and its hostPort, a pod gets its DNS config and hostname.
func checkPodNetworking(t *testing.T, n *node) error {
	client := framework.PodSpec{Name: "client", Hostname: "client-host", DNS: []string{"10.150.255.10"}}
	cid := n.RunPod(client)
	sh := n.RunContainer(cid, client, "sh", framework.BusyboxImage, "sleep", "3600")
	web := framework.PodSpec{Name: "web", HostPort: n.hostPort()}
	_, webIP := n.podWithWeb(t, web)
	var errs []error
	if out, err := n.Exec(sh, "wget", "-q", "-O", "-", "http://"+webIP.String()+"/"); err != nil || out == "" {
		errs = append(errs, fmt.Errorf("pod to pod (wget %s from the client's container): %q %v", webIP, out, err))
	}
	if _, err := framework.HTTPGet("http://" + webIP.String() + "/"); err != nil {
		errs = append(errs, fmt.Errorf("host to pod: %w", err))
	}
	if _, err := framework.HTTPGet(fmt.Sprintf("http://%s:%d/", n.Net.Gateway(), n.hostPort())); err != nil {
		errs = append(errs, fmt.Errorf("hostPort %d through portmap: %w", n.hostPort(), err))
	}
	if out, err := n.Exec(sh, "cat", "/etc/resolv.conf"); err != nil || !strings.Contains(out, "nameserver 10.150.255.10") || !strings.Contains(out, "e2e.svc.cluster.local") {
		errs = append(errs, fmt.Errorf("resolv.conf: %q %v", out, err))
	}
	if out, err := n.Exec(sh, "hostname"); err != nil || strings.TrimSpace(out) != "client-host" {
		errs = append(errs, fmt.Errorf("hostname: %q %v", out, err))
	}
	return errors.Join(errs...)
}

// checkStopRemove: a pod stopped and removed leaves no IP, veth, rule, cache entry or netns
// mount.
func checkStopRemove(t *testing.T, n *node) error {
	before := n.state()
	p := framework.PodSpec{Name: "gone", HostPort: n.hostPort()}
	id, _ := n.podWithWeb(t, p)
	if err := n.RemovePod(id); err != nil {
		return err
	}
	return n.leaks(before, id[:12])
}

// checkRestart: containerd restarted with pods running keeps them (same IP, still serving)
// and removes them later leaving nothing.
func checkRestart(t *testing.T, n *node) error {
	before := n.state()
	p := framework.PodSpec{Name: "kept", HostPort: n.hostPort()}
	id, ip := n.podWithWeb(t, p)
	n.Restart()
	if got := n.PodIP(id); !got.Equal(ip) {
		return fmt.Errorf("pod IP %s before the restart, %s after", ip, got)
	}
	if _, err := framework.HTTPGet("http://" + ip.String() + "/"); err != nil {
		return fmt.Errorf("pod after the restart: %w", err)
	}
	if err := n.RemovePod(id); err != nil {
		return err
	}
	return n.leaks(before, id[:12])
}

// checkKillStorm: containerd SIGKILLed while pods start, restarted, every pod removed as the
// kubelet would (stop, remove): no IP is left reserved.
func checkKillStorm(t *testing.T, n *node) error {
	before := n.state()
	const pods = 12
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for i := range pods {
		wg.Go(func() {
			_, _ = n.RunPodCtx(ctx, framework.PodSpec{Name: fmt.Sprintf("storm-%d", i)})
		})
	}
	// Kill once some set-ups have reserved addresses and others are still running.
	var reserved int
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if reserved = len(n.state().IPs); reserved >= pods/3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Kill(syscall.SIGKILL)
	t.Logf("containerd SIGKILLed with %d of %d pods' IPs reserved", reserved, pods)
	cancel()
	wg.Wait()
	n.Start()
	ids, err := n.PodIDs()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := n.RemovePod(id); err != nil {
			return err
		}
	}
	// A set-up no caller got a result for has no sandbox left to remove: what it reserved is
	// the runtime's to release.
	var errs []error
	framework.WaitUntil(10*time.Second, func() bool { return n.leaks(before) == nil })
	if err := n.leaks(before); err != nil {
		errs = append(errs, fmt.Errorf("%d sandboxes removed after the restart; %w", len(ids), err))
	}
	return errors.Join(errs...)
}

// checkConfDirRecreated: the conf dir deleted, then re-created with a network: the network
// comes back and pods get IPs. containerd v2.4.2's own conf dir watcher (not go-cni's code)
// exits containerd when the dir is deleted; the check then starts it again, as its supervisor
// (systemd) would, before the dir comes back.
func checkConfDirRecreated(t *testing.T, n *node) error {
	if ok, msg := n.WaitNetworkReady(true, 10*time.Second); !ok {
		t.Fatalf("network not ready at start: %s", msg)
	}
	if err := os.RemoveAll(n.ConfDir); err != nil {
		t.Fatal(err)
	}
	if !framework.WaitUntil(10*time.Second, func() bool { ready, _ := n.NetworkReady(); return !ready || n.Exited() }) {
		return errors.New("network still ready 10 s after its conf dir was deleted")
	}
	if framework.WaitUntil(2*time.Second, n.Exited) {
		t.Logf("containerd %s exited when its conf dir was deleted (its CRI plugin's conf syncer); starting it again", n.Build)
		n.Start()
	}
	if err := os.MkdirAll(n.ConfDir, 0o700); err != nil {
		t.Fatal(err)
	}
	framework.WriteFileAtomic(t, n.ConfDir, "10-"+n.Net.Name+".conflist", n.Net.Conflist())
	if ok, msg := n.WaitNetworkReady(true, 15*time.Second); !ok {
		return fmt.Errorf("network not ready 15 s after its conf dir came back: %s", msg)
	}
	return n.podGetsIP(t, "after", "pod after the conf dir came back")
}

// checkInvalidFirst: a file that does not parse, sorted before the network's: the node stays
// ready on the valid network and pods get IPs.
func checkInvalidFirst(t *testing.T, n *node) error {
	if ok, msg := n.WaitNetworkReady(true, 10*time.Second); !ok {
		t.Fatalf("network not ready at start: %s", msg)
	}
	framework.WriteFileAtomic(t, n.ConfDir, "00-broken.conflist", `{"cniVersion": "1.0.0", "name": `)
	time.Sleep(2 * time.Second) // both builds have seen it
	if ready, msg := n.NetworkReady(); !ready {
		return fmt.Errorf("network not ready with a broken file sorted first: %s", msg)
	}
	return n.podGetsIP(t, "despite", "pod with a broken file sorted first")
}

// podGetsIP runs a pod named name, bounded by a minute, and checks it got an IP; an error
// starts with what.
func (n *node) podGetsIP(t *testing.T, name, what string) error {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	id, err := n.RunPodCtx(ctx, framework.PodSpec{Name: name})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n.PodIP(id)
	return nil
}

// checkStatus: a CNI 1.1 network whose plugin answers STATUS with an error: containerd reports
// the network not ready, and ready again once the plugin is available.
func checkStatus(t *testing.T, n *node) error {
	bin := t.TempDir()
	plugintest.MustInstallAs(t, bin, "statusgate")
	gate := plugintest.SidecarPath(filepath.Join(bin, "statusgate"))
	unavailable := plugintest.Behavior{Commands: map[string]plugintest.Action{
		"STATUS": {Do: plugintest.Error, Code: 50, Msg: "statusgate: the plugin is not available yet"},
	}}
	plugintest.MustWriteBehavior(t, gate, unavailable)
	n.setBinDirs(t, bin)
	list := framework.Conflist("1.1.0", n.Net.Name, n.Net.BridgePlugin(), framework.PortmapPlugin, `{"type": "statusgate"}`)
	framework.WriteFileAtomic(t, n.ConfDir, "10-"+n.Net.Name+".conflist", list)
	if ok, msg := n.WaitNetworkReady(false, 15*time.Second); !ok {
		return fmt.Errorf("network ready while its plugin's STATUS fails: %s", msg)
	} else if !strings.Contains(msg, "not available yet") {
		t.Logf("NetworkReady false, but the plugin's message is not in: %s", msg)
	}
	plugintest.MustWriteBehavior(t, gate, plugintest.Behavior{})
	if ok, msg := n.WaitNetworkReady(true, 15*time.Second); !ok {
		return fmt.Errorf("network not ready 15 s after its plugin's STATUS succeeds: %s", msg)
	}
	return nil
}

// setBinDirs restarts containerd with extra added to its CNI plugin dirs.
func (n *node) setBinDirs(t *testing.T, extra string) {
	t.Helper()
	b, err := os.ReadFile(n.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), fmt.Sprintf("bin_dirs = [%q]", n.Env.CNIBin), fmt.Sprintf("bin_dirs = [%q, %q]", n.Env.CNIBin, extra), 1)
	if cfg == string(b) {
		t.Fatal("the config has no bin_dirs line to change")
	}
	if err := os.WriteFile(n.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n.Restart()
}

// checkAnnotationNetwork: a pod whose NPWG networks annotation names a second network of the
// conf dir gets an interface on it, inside containerd.
func checkAnnotationNetwork(t *testing.T, n *node) error {
	k := n.k
	second := framework.NewNet(t, "second", fmt.Sprintf("cnictd2x%d", k), fmt.Sprintf("10.151.%d.0/24", k%250+1))
	framework.WriteFileAtomic(t, n.ConfDir, "20-second.conflist", second.Conflist())
	time.Sleep(time.Second)
	p := framework.PodSpec{Name: "multi", Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name": "second", "interface": "net1"}]`}}
	id := n.RunPod(p)
	sh := n.RunContainer(id, p, "sh", framework.BusyboxImage, "sleep", "3600")
	out, err := n.Exec(sh, "ip", "-4", "-o", "addr", "show", "net1")
	if err != nil {
		return fmt.Errorf("ip addr show net1 in the pod: %w", err)
	}
	prefix := strings.TrimSuffix(second.Subnet.IP.String(), "0")
	if !strings.Contains(out, "inet "+prefix) {
		return fmt.Errorf("net1 in the pod has %q, want an address of %s", out, second.Subnet)
	}
	if ip := n.PodIP(id); !n.Net.Subnet.Contains(ip) {
		return fmt.Errorf("pod IP %s, want the default network's (%s)", ip, n.Net.Subnet)
	}
	before := second.IPAMDir
	if err := n.RemovePod(id); err != nil {
		return err
	}
	if st := leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{before}}); len(st.IPs) > 0 {
		return fmt.Errorf("second network's IPs left: %v", st.IPs)
	}
	return nil
}
