//go:build linux

// Package cninetwork_test drives pkg/cninetwork with the real CNI plugins in real network
// namespaces. Every test runs on its own bridge, subnets and dirs, and fails if it leaves an IP,
// a cache entry, a netns, a veth or a portmap rule behind.
package cninetwork_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/pkg/adapter/cri"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// inSubnet fails the test unless every IP of st is in one of the subnets.
func inSubnet(t *testing.T, st *cninetwork.PodNetworkStatus, subnets ...string) {
	t.Helper()
	if st == nil || len(st.IPs) == 0 {
		t.Fatalf("pod status has no IPs: %+v", st)
	}
	for _, ip := range st.IPs {
		ok := false
		for _, s := range subnets {
			_, n, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatal(err)
			}
			ok = ok || n.Contains(ip)
		}
		if !ok {
			t.Fatalf("pod IP %s is in none of %v", ip, subnets)
		}
	}
}

func TestTwoPodsOnABridgeReachEachOther(t *testing.T) {
	n := newNode(t)
	sub := n.subnet4(0)
	n.writeConf("10-bridge.conflist", n.bridgeConf("e2e-bridge", n.bridge(0), v4Ranges(sub)))
	p := n.plugin()
	framework.WaitDefault(t, p, "e2e-bridge")

	a, b := n.pod("a"), n.pod("b")
	sa, err := p.SetUpPod(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := p.SetUpPod(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	inSubnet(t, sa, sub)
	inSubnet(t, sb, sub)
	if sa.IPs[0].Equal(sb.IPs[0]) {
		t.Fatalf("both pods got %s", sa.IPs[0])
	}

	listen(t, b.NetNS, net.JoinHostPort(sb.IPs[0].String(), "8080"), "hello from b")
	got, err := fetch(a.NetNS, net.JoinHostPort(sb.IPs[0].String(), "8080"))
	if err != nil || got != "hello from b" {
		t.Fatalf("pod a -> pod b: got %q, %v; want the listener's reply", got, err)
	}
	// Loopback is up inside the pod (in-process by default).
	listen(t, a.NetNS, "127.0.0.1:9090", "lo works")
	if got, err := fetch(a.NetNS, "127.0.0.1:9090"); err != nil || got != "lo works" {
		t.Fatalf("loopback inside pod a: got %q, %v", got, err)
	}

	for _, pod := range []*cninetwork.Pod{a, b} {
		if err := p.TearDownPod(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		// A second teardown is a no-op that succeeds.
		if err := p.TearDownPod(t.Context(), pod); err != nil {
			t.Fatalf("second teardown: %v", err)
		}
	}
}

func TestHostPortReachesPodFromHost(t *testing.T) {
	n := newNode(t)
	sub := n.subnet4(0)
	n.writeConf("10-pm.conflist", n.bridgeConf("e2e-portmap", n.bridge(0), v4Ranges(sub),
		`{"type": "portmap", "capabilities": {"portMappings": true}}`))
	p := n.plugin()
	framework.WaitDefault(t, p, "e2e-portmap")

	pod := n.pod("web")
	hostPort := int32(32000 + n.seq%1000)
	pod.PortMappings = []cninetwork.PortMapping{{Protocol: "tcp", ContainerPort: 8080, HostPort: hostPort}}
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	inSubnet(t, st, sub)
	listen(t, pod.NetNS, ":8080", "hello via hostPort")

	// From the host netns, to a local address of the host (the bridge's gateway), on the host
	// port: portmap's DNAT for locally generated traffic sends it into the pod.
	_, ipn, _ := net.ParseCIDR(sub)
	gw := ipn.IP.To4()
	gw[3] = 1
	got, err := fetch("", net.JoinHostPort(gw.String(), fmt.Sprint(hostPort)))
	if err != nil || got != "hello via hostPort" {
		t.Fatalf("host -> %s:%d: got %q, %v; want the pod's reply", gw, hostPort, got, err)
	}
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch("", net.JoinHostPort(gw.String(), fmt.Sprint(hostPort))); err == nil {
		t.Fatal("host port still answers after teardown")
	}
}

func TestBandwidthAnnotationsShapeHostVeth(t *testing.T) {
	n := newNode(t)
	sub := n.subnet4(0)
	br := n.bridge(0)
	n.writeConf("10-bw.conflist", n.bridgeConf("e2e-bw", br, v4Ranges(sub),
		`{"type": "bandwidth", "capabilities": {"bandwidth": true}}`))
	p := n.plugin()
	framework.WaitDefault(t, p, "e2e-bw")

	pod := n.pod("shaped")
	pod.Annotations = map[string]string{
		"kubernetes.io/ingress-bandwidth": "10M",
		"kubernetes.io/egress-bandwidth":  "20M",
	}
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	veth := bridgePort(t, br)
	qdiscs, err := netlink.QdiscList(veth)
	if err != nil {
		t.Fatal(err)
	}
	var tbf *netlink.Tbf
	for _, q := range qdiscs {
		if q, ok := q.(*netlink.Tbf); ok {
			tbf = q
		}
	}
	if tbf == nil {
		t.Fatalf("no tbf qdisc on host veth %s: %v", veth.Attrs().Name, qdiscs)
	}
	// Ingress 10M bits/s shapes traffic towards the pod, i.e. the host veth's egress: tbf's
	// rate is in bytes per second.
	if want := uint64(10_000_000 / 8); tbf.Rate != want {
		t.Errorf("tbf rate on %s = %d bytes/s; want %d", veth.Attrs().Name, tbf.Rate, want)
	}
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	links, _ := leakcheck.LinkList()
	for _, l := range links {
		if l.Type() == "ifb" && strings.HasPrefix(l.Attrs().Name, "bwp") {
			t.Errorf("egress shaping device %s left after teardown", l.Attrs().Name)
		}
	}
}

// bridgePort returns the single host veth attached to bridge br.
func bridgePort(t *testing.T, br string) netlink.Link {
	t.Helper()
	b, err := netlink.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	links, err := leakcheck.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var ports []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex == b.Attrs().Index && l.Type() == "veth" {
			ports = append(ports, l)
		}
	}
	if len(ports) != 1 {
		t.Fatalf("bridge %s has %d veth ports; want 1", br, len(ports))
	}
	return ports[0]
}

func TestDualStackGivesOneIPv4AndOneIPv6(t *testing.T) {
	n := newNode(t)
	s4, s6 := n.subnet4(0), n.subnet6(0)
	ranges := fmt.Sprintf(`[[{"subnet": %q}], [{"subnet": %q}]]`, s4, s6)
	n.writeConf("10-ds.conflist", n.bridgeConf("e2e-dualstack", n.bridge(0), ranges))
	p := n.plugin()
	framework.WaitDefault(t, p, "e2e-dualstack")

	pod := n.pod("ds")
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.IPs) != 2 || st.IPs[0].To4() == nil || st.IPs[1].To4() != nil {
		t.Fatalf("dual-stack IPs = %v; want one IPv4 then one IPv6", st.IPs)
	}
	inSubnet(t, st, s4, s6)
	cs := cri.NetworkStatus(st)
	if cs.GetIp() != st.IPs[0].String() || len(cs.GetAdditionalIps()) != 1 || cs.GetAdditionalIps()[0].GetIp() != st.IPs[1].String() {
		t.Fatalf("CRI status = %v; want primary %s and additional %s", cs, st.IPs[0], st.IPs[1])
	}
	// Status is read back from memory without touching the netns.
	got, err := p.GetPodNetworkStatus(t.Context(), pod)
	if err != nil || len(got.IPs) != 2 || !got.IPs[1].Equal(st.IPs[1]) {
		t.Fatalf("GetPodNetworkStatus = %+v, %v; want %v", got, err, st.IPs)
	}
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
}

// TestTeardownUsesTheNetworkThePodWasSetUpOn sets a pod up on network A, moves the default to
// B (a file sorting first), and checks that teardown releases the IP in A's host-local store,
// both while A's file exists and after it was deleted.
func TestTeardownUsesTheNetworkThePodWasSetUpOn(t *testing.T) {
	for _, deleteA := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleteA=%v", deleteA), func(t *testing.T) {
			n := newNode(t)
			n.writeConf("20-a.conflist", n.bridgeConf("e2e-net-a", n.bridge(0), v4Ranges(n.subnet4(0))))
			p := n.plugin()
			framework.WaitDefault(t, p, "e2e-net-a")

			pod := n.pod("moved")
			if _, err := p.SetUpPod(t.Context(), pod); err != nil {
				t.Fatal(err)
			}
			storeA := filepath.Join(n.ipamDir, "e2e-net-a")
			if ips := reservedIPs(t, storeA); len(ips) != 1 {
				t.Fatalf("network A's store holds %v after setup; want one IP", ips)
			}

			n.writeConf("10-b.conflist", n.bridgeConf("e2e-net-b", n.bridge(1), v4Ranges(n.subnet4(1))))
			if deleteA {
				if err := os.Remove(filepath.Join(n.confDir, "20-a.conflist")); err != nil {
					t.Fatal(err)
				}
			}
			framework.WaitDefault(t, p, "e2e-net-b")

			if err := p.TearDownPod(t.Context(), pod); err != nil {
				t.Fatal(err)
			}
			if ips := reservedIPs(t, storeA); len(ips) != 0 {
				t.Fatalf("network A's store still holds %v after teardown", ips)
			}
			if ips := reservedIPs(t, filepath.Join(n.ipamDir, "e2e-net-b")); len(ips) != 0 {
				t.Fatalf("network B's store holds %v; the pod was never on B", ips)
			}
		})
	}
}

func reservedIPs(t *testing.T, store string) []string {
	t.Helper()
	entries, err := os.ReadDir(store)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// TestTeardownAfterNetnsVanished removes the pod's netns before teardown: DEL runs with an empty
// netns, as the spec allows, and still releases the IP.
func TestTeardownAfterNetnsVanished(t *testing.T) {
	n := newNode(t)
	n.writeConf("10-bridge.conflist", n.bridgeConf("e2e-gone", n.bridge(0), v4Ranges(n.subnet4(0))))
	p := n.plugin()
	framework.WaitDefault(t, p, "e2e-gone")
	pod := n.pod("gone")
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if err := removeNetns(pod.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatalf("teardown with the netns gone: %v", err)
	}
	if ips := reservedIPs(t, filepath.Join(n.ipamDir, "e2e-gone")); len(ips) != 0 {
		t.Fatalf("store still holds %v", ips)
	}
	// The bridge plugin could not reach the pod's end, so the host end goes with the namespace:
	// the kernel destroys a namespace's links in the background after its last reference goes.
	// Wait for that, bounded, so the leak check at cleanup does not see a veth on its way out.
	// The kernel tears namespaces down one batch at a time, so while other tests churn through
	// namespaces it can take tens of seconds.
	removed := time.Now()
	deadline := removed.Add(90 * time.Second)
	for {
		ports, err := leakcheck.BridgePorts(n.bridge(0))
		if err != nil {
			t.Fatal(err)
		}
		if len(ports) == 0 {
			t.Logf("the kernel removed the host veth %s after the namespace", time.Since(removed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host veth %v still on bridge %s %s after its namespace was removed", ports, n.bridge(0), time.Since(removed).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
