//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
)

// families are the IP families of the cluster, IPv4 first; v4 tells which.
var families = []struct {
	name string
	v4   bool
}{{"ipv4", true}, {"ipv6", false}}

// TestPodToPod mirrors "[sig-network] Networking Granular Checks: Pods should function for
// intra-pod communication: http [NodeConformance] [Conformance]" and its udp twin: pods on the
// same node and on other nodes reach each other over TCP and UDP, in both families, and each
// answer comes from the pod dialled.
func TestPodToPod(t *testing.T) {
	t.Parallel()
	var pods []*pod
	for _, n := range cl.Nodes {
		for _, s := range []string{"a", "b"} {
			pods = append(pods, runPod(t, n, fmt.Sprintf("intra-%s-%s", n.Name, s)))
		}
	}
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			for _, fam := range families {
				for _, proto := range []string{"tcp", "udp"} {
					if err := ask(t.Context(), from.NetNS, proto, to.ip(t, fam.v4), netexecPort, to.name, netip.Addr{}); err != nil {
						t.Errorf("pod %s to pod %s over %s %s: %v", from, to, fam.name, proto, err)
					}
				}
			}
		}
	}
}

// TestNodeToPod mirrors "[sig-network] Networking Granular Checks: Pods should function for
// node-pod communication: http [LinuxOnly] [NodeConformance] [Conformance]" and its udp twin:
// from every node's own namespace, pods on every node answer over TCP and UDP in both families.
func TestNodeToPod(t *testing.T) {
	t.Parallel()
	var pods []*pod
	for _, n := range cl.Nodes {
		pods = append(pods, runPod(t, n, "nodepod-"+n.Name))
	}
	for _, n := range cl.Nodes {
		for _, to := range pods {
			for _, fam := range families {
				for _, proto := range []string{"tcp", "udp"} {
					if err := ask(t.Context(), n.NetNSPath, proto, to.ip(t, fam.v4), netexecPort, to.name, netip.Addr{}); err != nil {
						t.Errorf("node %s to pod %s over %s %s: %v", n.Name, to, fam.name, proto, err)
					}
				}
			}
		}
	}
}

// TestHostPortNoConflict mirrors "[sig-network] HostPort validates that there is no conflict
// between pods with same hostPort but different hostIP and protocol [LinuxOnly] [Conformance]":
// three pods on one node publish host port 54323 on (127.0.0.1, TCP), (node IP, TCP) and (node
// IP, UDP); each is reached on its own mapping and answers with its own name, 127.0.0.1 from
// the node itself, the node IP from the node and from another node.
func TestHostPortNoConflict(t *testing.T) {
	t.Parallel()
	const port = 54323
	n, other := cl.Node(1), cl.Node(2)
	nodeIP := n.IPs[0]
	mappings := []struct {
		name   string
		hostIP netip.Addr
		proto  string
		from   []*localcluster.Node
	}{
		{"hostport-loopback-tcp", netip.MustParseAddr("127.0.0.1"), "tcp", []*localcluster.Node{n}},
		{"hostport-nodeip-tcp", nodeIP, "tcp", []*localcluster.Node{n, other}},
		{"hostport-nodeip-udp", nodeIP, "udp", []*localcluster.Node{n, other}},
	}
	for _, m := range mappings {
		runPod(t, n, m.name, hostPort{hostIP: m.hostIP.String(), proto: strings.ToUpper(m.proto), port: port})
	}
	for _, m := range mappings {
		for _, from := range m.from {
			if err := ask(t.Context(), from.NetNSPath, m.proto, m.hostIP, port, m.name, netip.Addr{}); err != nil {
				t.Errorf("%s %s:%d from node %s: %v", m.proto, m.hostIP, port, from.Name, err)
			}
		}
	}
}

// TestNoSNAT mirrors "[sig-network] NoSNAT Should be able to send traffic between Pods without
// SNAT": the client address a pod sees is the client pod's own IP, from the same node and from
// another node, over TCP and UDP in both families.
func TestNoSNAT(t *testing.T) {
	t.Parallel()
	server := runPod(t, cl.Node(0), "nosnat-server")
	clients := []*pod{runPod(t, cl.Node(0), "nosnat-client-same"), runPod(t, cl.Node(2), "nosnat-client-other")}
	for _, c := range clients {
		for _, fam := range families {
			for _, proto := range []string{"tcp", "udp"} {
				if err := ask(t.Context(), c.NetNS, proto, server.ip(t, fam.v4), netexecPort, server.name, c.ip(t, fam.v4)); err != nil {
					t.Errorf("pod %s to pod %s over %s %s: %v", c, server, fam.name, proto, err)
				}
			}
		}
	}
}

// TestDualStack mirrors "[sig-network] [Feature:IPv6DualStack] should create pod, add ipv6 and
// ipv4 ip to pod ips" and "should be able to reach pod on ipv4 and ipv6 ip": every pod has one
// IP of each family from its node's pod CIDRs, the IPv4 one first (status.network.ip) and the
// IPv6 one in additionalIps, and pods on other nodes reach it over both.
func TestDualStack(t *testing.T) {
	t.Parallel()
	var pods []*pod
	for _, n := range cl.Nodes {
		p := runPod(t, n, "dual-"+n.Name)
		pods = append(pods, p)
		if len(p.IPs) != 2 || !p.IPs[0].Is4() || !p.IPs[1].Is6() {
			t.Errorf("pod %s: IPs %v (ip, then additionalIps); want an IPv4 then an IPv6", p, p.IPs)
			continue
		}
		for i, ip := range p.IPs {
			if !n.PodCIDRs[i].Contains(ip) {
				t.Errorf("pod %s: IP %s not in its node's pod CIDR %s", p, ip, n.PodCIDRs[i])
			}
		}
	}
	if t.Failed() {
		return
	}
	for i, from := range pods {
		to := pods[(i+1)%len(pods)]
		for _, ip := range to.IPs {
			if err := ask(t.Context(), from.NetNS, "tcp", ip, netexecPort, to.name, from.ip(t, ip.Is4())); err != nil {
				t.Errorf("pod %s to pod %s at %s: %v", from, to, ip, err)
			}
		}
	}
}

// TestServerKilled mirrors the runtime-restart disruption of the node e2e tests
// (test/e2e_node/restart_test.go, "Container Runtime ... Network") from the network's side: one
// node's `cnishim serve` is SIGKILLed and started again. Its pods keep their IPs and stay
// reachable throughout; the other nodes' servers keep running (same PIDs) and their pods are
// reached without a single failure while a loop dials every pod all along.
func TestServerKilled(t *testing.T) {
	victim := cl.Node(2)
	var pods []*pod
	for _, n := range cl.Nodes {
		pods = append(pods, runPod(t, n, "survivor-"+n.Name))
	}
	pids := map[string]int{}
	for _, n := range cl.Nodes {
		pids[n.Name] = n.ServerPID()
	}
	// dialAll asks every pod from the pod on the next node, over TCP on IPv4 and UDP on IPv6.
	type target struct {
		from, to *pod
		proto    string
		addr     netip.Addr
	}
	var targets []target
	for i, to := range pods {
		from := pods[(i+1)%len(pods)]
		targets = append(targets, target{from, to, "tcp", to.ip(t, true)}, target{from, to, "udp", to.ip(t, false)})
	}
	dialAll := func(ctx context.Context) []string {
		var fails []string
		for _, c := range targets {
			if err := ask(ctx, c.from.NetNS, c.proto, c.addr, netexecPort, c.to.name, netip.Addr{}); err != nil {
				fails = append(fails, fmt.Sprintf("%s pod %s to pod %s: %v", time.Now().Format(time.StampMilli), c.from, c.to, err))
			}
		}
		return fails
	}
	if fails := dialAll(t.Context()); len(fails) > 0 {
		t.Fatalf("before the kill:\n%s", strings.Join(fails, "\n"))
	}

	ctx, stop := context.WithCancel(t.Context())
	var mu sync.Mutex
	var fails []string
	rounds := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			f := dialAll(ctx)
			mu.Lock()
			if ctx.Err() == nil {
				fails = append(fails, f...)
				rounds++
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	keepServer(t, victim)
	if err := victim.KillServer(); err != nil {
		t.Fatal(err)
	}
	// One full round with the server surely down.
	down := dialAll(t.Context())
	if err := victim.StartServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		sb, err := inspect(t.Context(), p.node, p.ID)
		if err != nil {
			t.Error(err)
			continue
		}
		if sb.State != "SANDBOX_READY" || fmt.Sprint(sb.IPs) != fmt.Sprint(p.IPs) || sb.NetNS != p.NetNS {
			t.Errorf("pod %s after the restart of %s's server: %s %v %s; want SANDBOX_READY %v %s", p, victim.Name, sb.State, sb.IPs, sb.NetNS, p.IPs, p.NetNS)
		}
	}
	after := dialAll(t.Context())
	stop()
	wg.Wait()
	for _, n := range cl.Nodes {
		if n != victim && n.ServerPID() != pids[n.Name] {
			t.Errorf("node %s: server PID %d, was %d: a server the kill should not touch changed", n.Name, n.ServerPID(), pids[n.Name])
		}
	}
	if victim.ServerPID() == 0 || victim.ServerPID() == pids[victim.Name] {
		t.Errorf("node %s: server PID %d after kill and restart (was %d)", victim.Name, victim.ServerPID(), pids[victim.Name])
	}
	for _, f := range [][]string{down, after, fails} {
		if len(f) > 0 {
			t.Errorf("pods unreachable around the kill of %s's server:\n%s", victim.Name, strings.Join(f, "\n"))
		}
	}
	t.Logf("%d background rounds of %d dials each, one round with the server down", rounds, len(targets))
}

// TestMissingPlugin mirrors the kubelet's node readiness rule (a runtime reporting
// NetworkReady=false makes the node NotReady, "container runtime network not ready"): a
// configuration naming a plugin that is not installed makes that node's network not ready, with
// the plugin named in the reason, and refuses its new pods; the other nodes stay ready; with
// the configuration restored the node is ready again (the server's watcher picks it up, with
// no restart) and runs pods that other nodes reach.
func TestMissingPlugin(t *testing.T) {
	const missing = "cnishim-no-such-plugin"
	n := cl.Node(0)
	// Up's file name for the network's conflist; kindnet's and flannel's both end in portmap.
	path := n.ConfDir + "/10-" + cl.Config.Network + ".conflist"
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(orig), `"type": "portmap"`, `"type": "`+missing+`"`, 1)
	if broken == string(orig) {
		t.Fatalf("%s names no portmap plugin to replace:\n%s", path, orig)
	}
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pid := n.ServerPID()
	restored := false
	write([]byte(broken))
	t.Cleanup(func() {
		if !restored {
			write(orig)
		}
	})
	err = waitFor(ctx, func() error {
		c, err := networkReady(ctx, n)
		if err != nil {
			return err
		}
		if c.Status || !strings.Contains(c.Reason+" "+c.Message, missing) {
			return fmt.Errorf("node %s: NetworkReady %+v; want false naming %q", n.Name, c, missing)
		}
		t.Logf("node %s: NetworkReady false: %s: %s", n.Name, c.Reason, c.Message)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cl.Nodes[1:] {
		if c, err := networkReady(ctx, m); err != nil || !c.Status {
			t.Errorf("node %s while %s is not ready: NetworkReady %+v, %v; want true", m.Name, n.Name, c, err)
		}
	}
	cfg, err := writePodConfig(t.TempDir(), "notready", 0)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := crictl(ctx, n, "runp", cfg); err == nil {
		removePod(t, n, strings.TrimSpace(out))
		t.Errorf("node %s ran a pod with its network not ready", n.Name)
	}

	write(orig)
	restored = true
	err = waitFor(ctx, func() error {
		c, err := networkReady(ctx, n)
		if err == nil && !c.Status {
			err = fmt.Errorf("node %s: NetworkReady %+v after the config was restored", n.Name, c)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.ServerPID(); got != pid {
		t.Errorf("node %s: server PID %d, was %d: readiness came back by a restart, not the watcher", n.Name, got, pid)
	}
	p := runPod(t, n, "ready-again")
	if err := ask(ctx, cl.Node(1).NetNSPath, "tcp", p.ip(t, true), netexecPort, p.name, netip.Addr{}); err != nil {
		t.Errorf("node %s to pod %s: %v", cl.Node(1).Name, p, err)
	}
}
