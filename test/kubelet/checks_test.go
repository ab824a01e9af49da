//go:build linux && (kubelet_e2e || kubelet_bench)

package kubelet

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/test/framework"
)

// checks are the suite's checks, in the order docs/kubelet.md lists them.
var checks = []framework.Check{
	{Name: "network not ready holds pods", Run: onEmptyNode(checkNotReadyHoldsPods)},
	{Name: "probes, hostPort, pod to pod", Run: onNode(checkPodNetworking)},
	{Name: "bandwidth annotations", Run: onNode(checkBandwidth)},
	{Name: "second network through the NPWG annotation", CnishimOnly: true, Run: onNode(checkAnnotationNetwork)},
	{Name: "manifest removed", Run: onNode(checkManifestRemoved)},
	{Name: "manifest removed while the kubelet is down", Run: onNode(checkRemovedWhileDown)},
	{Name: "kubelet restarted", Run: onNode(checkKubeletRestart)},
	{Name: "containerd SIGKILLed and restarted", Run: onNode(checkContainerdKilled)},
	{Name: "pause process killed", Run: onNode(checkPauseKilled)},
	{Name: "node reboot", Run: onNode(checkReboot)},
	{Name: "storm of 60 static pods", Run: onNode(checkStorm)},
}

// onNode runs a check on a fresh node of the build, its network in its conf dir.
func onNode(run func(t *testing.T, n *node) error) func(t *testing.T, build string) error {
	return func(t *testing.T, build string) error { return run(t, newNode(t, build, false)) }
}

// onEmptyNode runs a check on a fresh node of the build whose conf dir has no network.
func onEmptyNode(run func(t *testing.T, n *node) error) func(t *testing.T, build string) error {
	return func(t *testing.T, build string) error { return run(t, newNode(t, build, true)) }
}

// TestKubeletChecks runs every check on both builds, a kubelet on each, and logs the
// side-by-side table (framework.RunSideBySide).
func TestKubeletChecks(t *testing.T) {
	framework.RunSideBySide(t, "kubelet on stock containerd", "kubelet on containerd with cnishim", checks)
}

// checkNotReadyHoldsPods: with no network in the conf dir, the kubelet reports the runtime's
// network not ready, with the runtime's reason, and starts no sandbox for a pod; the conflist
// copied in, the pod becomes Ready with an IP.
func checkNotReadyHoldsPods(t *testing.T, n *node) error {
	n.K.WriteManifest("held", newPod("held", nil, sleeper()))
	// The kubelet's pod worker fails the pod's sync with the runtime's NetworkReady condition.
	const said = "container runtime network not ready"
	pod := n.K.PodName("held")
	var line string
	framework.WaitUntil(30*time.Second, func() bool {
		for _, l := range strings.Split(n.K.TailLog(1<<20), "\n") {
			if strings.Contains(l, "Error syncing pod") && strings.Contains(l, said) && strings.Contains(l, pod) {
				line = l
				return true
			}
		}
		return false
	})
	if line == "" {
		return fmt.Errorf("the kubelet never failed pod %s's sync with %q in 30 s", pod, said)
	}
	msg, _, _ := strings.Cut(line[strings.Index(line, said):], `" pod=`)
	t.Logf("the kubelet holds the pod: %s", msg)
	if n.Build == framework.CnishimContainerd && !strings.Contains(msg, "no valid CNI network config in "+n.ConfDir) {
		return fmt.Errorf("the kubelet's not-ready message does not carry cnishim's reason (no valid network in %s): %s", n.ConfDir, msg)
	}
	// Give the kubelet a few sync attempts: none may start a sandbox.
	time.Sleep(3 * time.Second)
	if ids, err := n.PodIDs(); err != nil {
		t.Fatal(err)
	} else if len(ids) > 0 {
		return fmt.Errorf("the kubelet started %d sandboxes with the network not ready", len(ids))
	}
	if pods, err := n.K.Pods(); err != nil {
		t.Fatal(err)
	} else if p := pods[n.K.PodName("held")]; p.Ready() || p.Status.PodIP != "" {
		return fmt.Errorf("pod Ready or with an IP while the network is not ready: %+v", p.Status)
	}
	n.writeConflist(t)
	if _, err := n.K.WaitReady(2*time.Minute, "held"); err != nil {
		return fmt.Errorf("after the conflist was copied in: %w", err)
	}
	return nil
}

// checkPodNetworking: pods get IPs the kubelet reports as the runtime does; the kubelet's HTTP
// readiness probe to the pod IP succeeds, while a probe to a closed port keeps a control pod
// unready; the host reaches a pod's hostPort; pod to pod from inside a container.
func checkPodNetworking(t *testing.T, n *node) error {
	got, err := n.run(t, 2*time.Minute, map[string]pod{
		"web":    newPod("web", nil, web(80, n.hostPort())),
		"client": newPod("client", nil, sleeper()),
	})
	if err != nil {
		return err
	}
	n.K.WriteManifest("control", newPod("control", nil, web(8081, 0)))
	var errs []error
	for _, name := range []string{"web", "client"} {
		p := got[n.K.PodName(name)]
		if ip := n.PodIP(n.sandbox(t, name)); ip.String() != p.Status.PodIP {
			errs = append(errs, fmt.Errorf("pod %s: the kubelet reports IP %s, containerd %s", name, p.Status.PodIP, ip))
		}
	}
	webIP := got[n.K.PodName("web")].Status.PodIP
	// The control pod's web server runs and has an IP, and its probe keeps failing.
	if msg := n.K.WaitPods(time.Minute, func(pods map[string]framework.KubePod) string {
		p := pods[n.K.PodName("control")]
		if p.Status.PodIP == "" || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].ContainerID == "" {
			return fmt.Sprintf("control pod not started: %+v", p.Status)
		}
		return ""
	}); msg != "" {
		return errors.New(msg)
	}
	time.Sleep(5 * time.Second) // five probe periods
	if pods, err := n.K.Pods(); err != nil {
		t.Fatal(err)
	} else if p := pods[n.K.PodName("control")]; p.Ready() {
		errs = append(errs, errors.New("control pod Ready though its probe's port is closed"))
	}
	if _, err := framework.HTTPGet("http://" + webIP + "/"); err != nil {
		errs = append(errs, fmt.Errorf("host to pod: %w", err))
	}
	if _, err := framework.HTTPGet(fmt.Sprintf("http://%s:%d/", n.Net.Gateway(), n.hostPort())); err != nil {
		errs = append(errs, fmt.Errorf("hostPort %d: %w", n.hostPort(), err))
	}
	if out, err := n.exec(t, "client", "sh", "wget", "-q", "-O", "-", "http://"+webIP+"/"); err != nil || out == "" {
		errs = append(errs, fmt.Errorf("pod to pod (wget %s from the client's container): %q %v", webIP, out, err))
	}
	return errors.Join(errs...)
}

// checkBandwidth: the kubelet's bandwidth annotations reach the bandwidth plugin through
// containerd: the pod's host veth shapes ingress with a token bucket and redirects egress to an
// ifb; both go with the pod.
func checkBandwidth(t *testing.T, n *node) error {
	ifbs, err := ifbLinks()
	if err != nil {
		t.Fatal(err)
	}
	before := n.state()
	ann := map[string]string{"kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M"}
	if _, err := n.run(t, 2*time.Minute, map[string]pod{"shaped": newPod("shaped", ann, sleeper())}); err != nil {
		return err
	}
	veth, err := n.hostVeth(t, "shaped", "sh")
	if err != nil {
		return err
	}
	out, err := exec.Command("tc", "qdisc", "show", "dev", veth).CombinedOutput()
	if err != nil {
		t.Fatalf("tc qdisc show dev %s: %v\n%s", veth, err, out)
	}
	qdiscs := string(out)
	var errs []error
	if !strings.Contains(qdiscs, "tbf") || !strings.Contains(qdiscs, "rate 1Mbit") {
		errs = append(errs, fmt.Errorf("host veth %s has no 1Mbit token bucket (ingress-bandwidth): %s", veth, qdiscs))
	}
	if !strings.Contains(qdiscs, "ingress") {
		errs = append(errs, fmt.Errorf("host veth %s has no ingress qdisc (egress-bandwidth's redirect): %s", veth, qdiscs))
	} else if ifb, err := redirectedTo(veth); err != nil {
		errs = append(errs, err)
	} else if out, err := exec.Command("tc", "qdisc", "show", "dev", ifb).CombinedOutput(); err != nil || !strings.Contains(string(out), "rate 2Mbit") {
		errs = append(errs, fmt.Errorf("ifb %s (egress-bandwidth) has no 2Mbit token bucket: %s %v", ifb, out, err))
	}
	if now, err := ifbLinks(); err != nil {
		t.Fatal(err)
	} else if now != ifbs+1 {
		errs = append(errs, fmt.Errorf("%d ifb links with the pod, %d before it: want one more (egress-bandwidth)", now, ifbs))
	}
	n.K.RemoveManifest("shaped")
	if err := n.waitNoLeaks(time.Minute, before); err != nil {
		errs = append(errs, err)
	}
	if now, err := ifbLinks(); err != nil {
		t.Fatal(err)
	} else if now != ifbs {
		errs = append(errs, fmt.Errorf("%d ifb links after the pod went, %d before it", now, ifbs))
	}
	return errors.Join(errs...)
}

// redirectedTo returns the device the filter on veth's ingress qdisc redirects to (the
// bandwidth plugin's ifb).
func redirectedTo(veth string) (string, error) {
	out, err := exec.Command("tc", "filter", "show", "dev", veth, "parent", "ffff:").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("tc filter show dev %s parent ffff:: %v\n%s", veth, err, out)
	}
	_, after, ok := strings.Cut(string(out), "Redirect to device ")
	if !ok {
		return "", fmt.Errorf("host veth %s redirects its ingress nowhere (egress-bandwidth): %s", veth, out)
	}
	// "... mirred (Egress Redirect to device bwp1a2b3c) stolen"
	return strings.TrimRight(strings.Fields(after)[0], ")"), nil
}

// checkAnnotationNetwork: a pod whose NPWG networks annotation names a second network of the
// conf dir gets an interface on it through the kubelet and containerd.
func checkAnnotationNetwork(t *testing.T, n *node) error {
	second := framework.NewNet(t, "second", fmt.Sprintf("cnikl2x%d", n.k), fmt.Sprintf("10.155.%d.0/24", n.k%250+1))
	// Registered after the bridge's removal, so run before it: the pod goes first.
	t.Cleanup(n.K.RemovePods)
	framework.WriteFileAtomic(t, n.ConfDir, "20-second.conflist", second.Conflist())
	time.Sleep(time.Second)
	ann := map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name": "second", "interface": "net1"}]`}
	got, err := n.run(t, 2*time.Minute, map[string]pod{"multi": newPod("multi", ann, sleeper())})
	if err != nil {
		return err
	}
	out, err := n.exec(t, "multi", "sh", "ip", "-4", "-o", "addr", "show", "net1")
	if err != nil {
		return fmt.Errorf("ip addr show net1 in the pod: %w", err)
	}
	prefix := strings.TrimSuffix(second.Subnet.IP.String(), "0")
	if !strings.Contains(out, "inet "+prefix) {
		return fmt.Errorf("net1 in the pod has %q, want an address of %s", out, second.Subnet)
	}
	if ip := net.ParseIP(got[n.K.PodName("multi")].Status.PodIP); !n.Net.Subnet.Contains(ip) {
		return fmt.Errorf("the kubelet reports pod IP %s, want the default network's (%s)", ip, n.Net.Subnet)
	}
	n.K.RemoveManifest("multi")
	if !framework.WaitUntil(time.Minute, func() bool {
		return len(leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{second.IPAMDir}}).IPs) == 0
	}) {
		return errors.New("the second network's IP is still reserved a minute after the manifest went")
	}
	return nil
}

// checkManifestRemoved: a static pod's manifest removed: the kubelet stops the sandbox, and
// its IP, veth, hostPort rules, cache entry and netns go.
func checkManifestRemoved(t *testing.T, n *node) error {
	before := n.state()
	if _, err := n.run(t, 2*time.Minute, map[string]pod{"gone": newPod("gone", nil, web(80, n.hostPort()))}); err != nil {
		return err
	}
	id := n.sandbox(t, "gone")
	n.K.RemoveManifest("gone")
	if !framework.WaitUntil(time.Minute, func() bool {
		_, err := n.K.SandboxOf(n.K.PodName("gone"))
		return errors.Is(err, framework.ErrNoSandbox)
	}) {
		return fmt.Errorf("sandbox %s still ready a minute after the manifest went", id[:12])
	}
	return n.waitNoLeaks(time.Minute, before, id[:12])
}

// checkRemovedWhileDown: a manifest removed while the kubelet is down: the pod runs on, and
// the kubelet, started again, stops it and everything of its network goes.
func checkRemovedWhileDown(t *testing.T, n *node) error {
	before := n.state()
	if _, err := n.run(t, 2*time.Minute, map[string]pod{"orphan": newPod("orphan", nil, web(80, n.hostPort()))}); err != nil {
		return err
	}
	id := n.sandbox(t, "orphan")
	n.K.Kill(syscall.SIGKILL)
	n.K.RemoveManifest("orphan")
	time.Sleep(2 * time.Second)
	if now, err := n.K.SandboxOf(n.K.PodName("orphan")); err != nil || now != id {
		return fmt.Errorf("the pod's sandbox %s did not run on while the kubelet was down: ready sandbox %q, %v", id[:12], now, err)
	}
	if err := n.leaks(before, id[:12]); err == nil {
		return errors.New("the pod's network went while the kubelet was down")
	}
	n.K.Start()
	return n.waitNoLeaks(time.Minute, before, id[:12])
}

// adopted checks that the pods of the manifests names kept their sandboxes and IPs (ids and
// ips, as they were) and are Ready again, their containers not restarted.
func (n *node) adopted(t *testing.T, what string, ids, ips map[string]string, names ...string) error {
	got, err := n.K.WaitReady(2*time.Minute, names...)
	if err != nil {
		return fmt.Errorf("after %s: %w", what, err)
	}
	var errs []error
	for _, name := range names {
		p := got[n.K.PodName(name)]
		if id := n.sandbox(t, name); id != ids[name] {
			errs = append(errs, fmt.Errorf("after %s, pod %s has sandbox %s, had %s", what, name, id[:12], ids[name][:12]))
		}
		if p.Status.PodIP != ips[name] {
			errs = append(errs, fmt.Errorf("after %s, the kubelet reports pod %s's IP %s, was %s", what, name, p.Status.PodIP, ips[name]))
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount != 0 {
				errs = append(errs, fmt.Errorf("after %s, pod %s's container %s restarted %d times", what, name, c.Name, c.RestartCount))
			}
		}
	}
	return errors.Join(errs...)
}

// twoPods runs a web pod with the node's hostPort and a sleeper, and returns their sandboxes
// and IPs by manifest name.
func (n *node) twoPods(t *testing.T) (ids, ips map[string]string, names []string, err error) {
	names = []string{"web", "sleeper"}
	got, err := n.run(t, 2*time.Minute, map[string]pod{
		"web":     newPod("web", nil, web(80, n.hostPort())),
		"sleeper": newPod("sleeper", nil, sleeper()),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	ids, ips = map[string]string{}, map[string]string{}
	for _, name := range names {
		ids[name] = n.sandbox(t, name)
		ips[name] = got[n.K.PodName(name)].Status.PodIP
	}
	return ids, ips, names, nil
}

// checkKubeletRestart: the kubelet restarted adopts its running pods: same sandboxes, same IPs,
// no container restarted, hostPort still served.
func checkKubeletRestart(t *testing.T, n *node) error {
	ids, ips, names, err := n.twoPods(t)
	if err != nil {
		return err
	}
	n.K.Restart()
	if err := n.adopted(t, "a kubelet restart", ids, ips, names...); err != nil {
		return err
	}
	if _, err := framework.HTTPGet(fmt.Sprintf("http://%s:%d/", n.Net.Gateway(), n.hostPort())); err != nil {
		return fmt.Errorf("hostPort after a kubelet restart: %w", err)
	}
	return nil
}

// checkContainerdKilled: containerd SIGKILLed and started again keeps the pods: same
// sandboxes, same IPs, Ready, serving.
func checkContainerdKilled(t *testing.T, n *node) error {
	ids, ips, names, err := n.twoPods(t)
	if err != nil {
		return err
	}
	n.Kill(syscall.SIGKILL)
	time.Sleep(2 * time.Second) // the kubelet sees the runtime gone
	n.Start()
	if err := n.adopted(t, "containerd SIGKILLed and restarted", ids, ips, names...); err != nil {
		return err
	}
	if _, err := framework.HTTPGet("http://" + ips["web"] + "/"); err != nil {
		return fmt.Errorf("pod after containerd's restart: %w", err)
	}
	return nil
}

// owned returns the IPs of the node's IPAM store reserved by one of the sandboxes ids.
func (n *node) owned(ids ...string) []string {
	st := leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{n.Net.IPAMDir}})
	var out []string
	for ip, owner := range st.IPOwners {
		for _, id := range ids {
			if strings.Contains(owner, id) {
				out = append(out, filepath.Base(ip))
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkPauseKilled: the pod's pause process killed: the kubelet makes a new sandbox, the pod
// is Ready again with an IP, and the old sandbox's IP is released.
func checkPauseKilled(t *testing.T, n *node) error {
	before := n.state()
	if _, err := n.run(t, 2*time.Minute, map[string]pod{"paused": newPod("paused", nil, web(80, n.hostPort()))}); err != nil {
		return err
	}
	old := n.sandbox(t, "paused")
	if err := syscall.Kill(n.pausePID(t, old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var fresh string
	if !framework.WaitUntil(2*time.Minute, func() bool {
		id, err := n.K.SandboxOf(n.K.PodName("paused"))
		fresh = id
		return err == nil && id != old
	}) {
		return errors.New("no new sandbox 2 minutes after the pause process was killed")
	}
	// The kubelet reports the new sandbox's IP once it has synced the pod on it.
	ip := n.PodIP(fresh).String()
	if msg := n.K.WaitPods(2*time.Minute, func(pods map[string]framework.KubePod) string {
		if p := pods[n.K.PodName("paused")]; !p.Ready() || p.Status.PodIP != ip {
			return fmt.Sprintf("pod Ready %t with IP %q, its new sandbox has %s", p.Ready(), p.Status.PodIP, ip)
		}
		return ""
	}); msg != "" {
		return fmt.Errorf("after the pause process was killed: %s", msg)
	}
	var errs []error
	if !framework.WaitUntil(time.Minute, func() bool { return len(n.owned(old)) == 0 }) {
		errs = append(errs, fmt.Errorf("the old sandbox %s still holds %v", old[:12], n.owned(old)))
	}
	if !slices.Contains(n.owned(fresh), ip) {
		errs = append(errs, fmt.Errorf("the new sandbox %s has IP %s and holds %v", fresh[:12], ip, n.owned(fresh)))
	}
	n.K.RemoveManifest("paused")
	if err := n.waitNoLeaks(time.Minute, before, old[:12], fresh[:12]); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkReboot: the node rebooted (the kubelet and containerd killed, every pod's processes,
// netns and veth gone, the IPAM store kept): once both start again, every pod runs again with
// an IP and no reservation of an old sandbox is left.
func checkReboot(t *testing.T, n *node) error {
	before := n.state()
	ids, _, names, err := n.twoPods(t)
	if err != nil {
		return err
	}
	old := make([]string, 0, len(ids))
	for _, id := range ids {
		old = append(old, id)
	}
	veths := n.state().Veths
	if len(veths) != len(old) {
		t.Fatalf("before the reboot the bridge has veths %v, want one per pod (%d)", veths, len(old))
	}
	n.K.Kill(syscall.SIGKILL)
	n.Reboot()
	// The kernel removes a netns, and its veths, once its last reference is dropped.
	for _, v := range veths {
		if !framework.WaitUntil(10*time.Second, func() bool { _, err := net.InterfaceByName(v); return err != nil }) {
			t.Fatalf("pod veth %s is still there 10 s after the reboot: its netns did not go", v)
		}
	}
	if held := n.owned(old...); len(held) != len(old) {
		t.Fatalf("after the reboot the IPAM store holds %v for the old sandboxes, want %d (the store is on disk)", held, len(old))
	}
	n.Start()
	n.K.Start()
	got, err := n.K.WaitReady(3*time.Minute, names...)
	if err != nil {
		return fmt.Errorf("after the reboot: %w", err)
	}
	var errs []error
	for _, name := range names {
		if id := n.sandbox(t, name); slices.Contains(old, id) {
			errs = append(errs, fmt.Errorf("pod %s runs in its sandbox of before the reboot", name))
		}
		if got[n.K.PodName(name)].Status.PodIP == "" {
			errs = append(errs, fmt.Errorf("pod %s has no IP after the reboot", name))
		}
	}
	if !framework.WaitUntil(time.Minute, func() bool { return len(n.owned(old...)) == 0 }) {
		errs = append(errs, fmt.Errorf("old sandboxes' reservations left after the reboot: %v", n.owned(old...)))
	}
	if _, err := framework.HTTPGet(fmt.Sprintf("http://%s:%d/", n.Net.Gateway(), n.hostPort())); err != nil {
		errs = append(errs, fmt.Errorf("hostPort after the reboot: %w", err))
	}
	for _, name := range names {
		n.K.RemoveManifest(name)
	}
	var short []string
	for _, id := range old {
		short = append(short, id[:12])
	}
	if err := n.waitNoLeaks(time.Minute, before, short...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stormPods is how many static pods the storm writes at once.
const stormPods = 60

// checkStorm: 60 static pods written at once all become Ready with distinct IPs, and leave
// nothing once their manifests go.
func checkStorm(t *testing.T, n *node) error {
	before := n.state()
	pods := map[string]pod{}
	for i := range stormPods {
		name := fmt.Sprintf("storm-%02d", i)
		pods[name] = newPod(name, nil, sleeper())
	}
	start := time.Now()
	got, err := n.run(t, 5*time.Minute, pods)
	if err != nil {
		return err
	}
	t.Logf("%d pods Ready in %v", stormPods, time.Since(start).Round(10*time.Millisecond))
	seen := map[string]string{}
	for name := range pods {
		ip := got[n.K.PodName(name)].Status.PodIP
		if other, dup := seen[ip]; dup {
			return fmt.Errorf("pods %s and %s both have IP %s", other, name, ip)
		}
		seen[ip] = name
	}
	start = time.Now()
	for name := range pods {
		n.K.RemoveManifest(name)
	}
	if err := n.waitNoLeaks(3*time.Minute, before); err != nil {
		return err
	}
	t.Logf("%d pods' networks released in %v", stormPods, time.Since(start).Round(10*time.Millisecond))
	return nil
}
