//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/test/framework"
)

// networkStatus is one element of the network-status document of crictl inspectp's info.
type networkStatus struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	MAC       string   `json:"mac"`
	Default   bool     `json:"default"`
}

// multinetPod runs a pod through crictl runp with the networks annotation in its config, and
// returns its ID, netns and network-status document.
func multinetPod(t *testing.T, s *server, name, annotation string) (id, nsPath string, status []networkStatus) {
	t.Helper()
	id = strings.TrimSpace(s.MustCrictl("runp", multinetConfig(t, s, name, annotation)))
	if len(id) != 64 {
		t.Fatalf("crictl runp printed %q, want a sandbox ID", id)
	}
	s.AddNeedle(id)
	var out struct {
		Info struct {
			NetNSPath     string          `json:"netnsPath"`
			NetworkStatus []networkStatus `json:"networkStatus"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(s.MustCrictl("inspectp", "-o", "json", id)), &out); err != nil {
		t.Fatalf("crictl inspectp %s: %v", id, err)
	}
	return id, out.Info.NetNSPath, out.Info.NetworkStatus
}

// multinetConfig writes the pod config of a pod with the networks annotation for crictl runp,
// and returns its path.
func multinetConfig(t *testing.T, s *server, name, annotation string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata":    map[string]any{"name": name, "namespace": "e2e", "uid": "uid-" + name, "attempt": 0},
		"hostname":    name,
		"annotations": map[string]string{"k8s.v1.cni.cncf.io/networks": annotation},
		"linux":       map[string]any{},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, name+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// routeDev returns the interface the netns at nsPath routes dst through.
func routeDev(t *testing.T, nsPath string, dst net.IP) string {
	t.Helper()
	var dev string
	err := netns.Do(nsPath, func() error {
		routes, err := netlink.RouteGet(dst)
		if err != nil {
			return err
		}
		if len(routes) == 0 {
			return fmt.Errorf("no route to %s", dst)
		}
		l, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return err
		}
		dev = l.Attrs().Name
		return nil
	})
	if err != nil {
		t.Fatalf("route to %s in %s: %v", dst, nsPath, err)
	}
	return dev
}

// A pod on three networks through crictl runp and the networks annotation: the default bridge
// network on eth0, a macvlan network (host-local IPAM) on a veth the test makes as net1, and a second
// bridge network with static IPAM as net2, its address asked for by the "ips" capability for
// one pod and by cni-args for its peer. The first pod's net2 selection also asks for its
// default route (default-route), which then leaves through net2 rather than eth0, as its
// network-status says; a pod whose default-route gateway net2 cannot reach is refused and
// rolled back. Each pod reaches its peer over each interface, routed through that interface;
// the verbose status carries the network-status document; removing the pods leaves nothing on
// any network.
func TestCRIPodOnSeveralNetworks(t *testing.T) {
	for _, p := range []string{"macvlan", "static"} {
		if _, err := os.Stat(filepath.Join(env.CNIBin, p)); err != nil {
			t.Fatalf("CNI plugin %s missing in %s (run make deps): %v", p, env.CNIBin, err)
		}
	}
	s := readyServer(t, "e2e-multi")
	k := netSlots.Next()
	parent := fmt.Sprintf("cnishim-m%d", k)
	mvSubnet := fmt.Sprintf("10.98.%d.0/24", k%250+1)
	stBridge := fmt.Sprintf("cnishim-s%d", k)
	stPrefix := fmt.Sprintf("10.97.%d.", k%250+1)

	// The macvlan parent, one end of a veth pair, exists only for this test, in the namespace
	// the plugins run in; nothing but its peer is on the other end.
	framework.CheckNoBridge(t, parent)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: parent}, PeerName: parent + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s: %v", parent, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(parent); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete veth %s: %v", parent, err)
			}
		}
	})
	for _, name := range []string{parent, parent + "p"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
	framework.CheckNoBridge(t, stBridge)
	t.Cleanup(func() { framework.DeleteBridge(t, stBridge) })
	suite.mu.Lock()
	suite.bridges = append(suite.bridges, stBridge)
	suite.mu.Unlock()

	mvIPAM := t.TempDir()
	framework.WriteFileAtomic(t, s.ConfDir, "50-mv.conflist", framework.Conflist("1.0.0", "e2e-mv", fmt.Sprintf(
		`{"type": "macvlan", "master": %q, "mode": "bridge", "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}`,
		parent, mvIPAM, mvSubnet)))
	framework.WriteFileAtomic(t, s.ConfDir, "60-st.conflist", framework.Conflist("1.0.0", "e2e-st", fmt.Sprintf(
		`{"type": "bridge", "bridge": %q, "capabilities": {"ips": true}, "ipam": {"type": "static"}}`, stBridge)))
	framework.Eventually(t, "the extra networks are selectable", func() string {
		out, err := s.Crictl("info")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(out, "e2e-mv") || !strings.Contains(out, "e2e-st") {
			return "crictl info lists neither e2e-mv nor e2e-st as selectable"
		}
		return ""
	})

	idA, nsA, stA := multinetPod(t, s, "pod-a", `[{"name":"e2e-mv","interface":"net1"},{"name":"e2e-st","interface":"net2","ips":["`+stPrefix+`10/24"],"default-route":["`+stPrefix+`1"]}]`)
	idB, nsB, stB := multinetPod(t, s, "pod-b", `[{"name":"e2e-mv","interface":"net1"},{"name":"e2e-st","interface":"net2","cni-args":{"ips":["`+stPrefix+`11/24"]}}]`)
	for _, st := range [][]networkStatus{stA, stB} {
		if len(st) != 3 || st[0].Interface != "eth0" || st[0].Name != "e2e-multi" ||
			st[1].Name != "e2e-mv" || st[1].Interface != "net1" || st[1].Default || st[1].MAC == "" ||
			st[2].Name != "e2e-st" || st[2].Interface != "net2" || len(st[0].IPs) != 1 || len(st[1].IPs) != 1 || len(st[2].IPs) != 1 {
			t.Fatalf("network status = %+v; want eth0, net1, net2, each with an IP and a MAC on net1", st)
		}
	}
	if stA[0].Default || !stA[2].Default || !stB[0].Default || stB[2].Default {
		t.Fatalf("network status default: pod-a eth0 %t net2 %t, pod-b eth0 %t net2 %t; want pod-a's on net2 (default-route), pod-b's on eth0",
			stA[0].Default, stA[2].Default, stB[0].Default, stB[2].Default)
	}
	// The macvlan network gives each pod a default route via net1; pod-a's default-route
	// replaced it. Lookups in the pods' routing tables: no packet leaves.
	if got, want := defaultRoutes(t, nsA), []string{"via " + stPrefix + "1 dev net2"}; !slices.Equal(got, want) {
		t.Fatalf("pod-a's default routes: %v; want %v, as its default-route asks", got, want)
	}
	if got, want := defaultRoutes(t, nsB), []string{fmt.Sprintf("via 10.98.%d.1 dev net1", k%250+1)}; !slices.Equal(got, want) {
		t.Fatalf("pod-b's default routes: %v; want %v, the macvlan network's", got, want)
	}
	far := net.ParseIP("192.0.2.1")
	if got := routeDev(t, nsA, far); got != "net2" {
		t.Fatalf("pod-a routes %s through %s; want net2, as its default-route asks", far, got)
	}
	// A gateway net2 cannot reach: the pod is refused, and rolled back off every network.
	cfgC := multinetConfig(t, s, "pod-c", `[{"name":"e2e-mv","interface":"net1"},{"name":"e2e-st","interface":"net2","ips":["`+stPrefix+`12/24"],"default-route":["198.51.100.1"]}]`)
	if out, err := s.Crictl("runp", cfgC); err == nil || !strings.Contains(out+err.Error(), "default-route") {
		t.Fatalf("crictl runp of a pod whose default-route gateway is off net2: %q, %v; want an error naming default-route", out, err)
	}
	if ports := framework.BridgePorts(t, stBridge); len(ports) != 2 {
		t.Fatalf("ports on %s after the refused pod: %v; want pod-a's and pod-b's", stBridge, ports)
	}
	if left := reservedIPs(t, mvIPAM); len(left) != 2 {
		t.Fatalf("macvlan addresses reserved after the refused pod: %v; want pod-a's and pod-b's", left)
	}
	if stA[2].IPs[0] != stPrefix+"10" || stB[2].IPs[0] != stPrefix+"11" {
		t.Fatalf("static addresses %s, %s; want %s10 (ips) and %s11 (cni-args)", stA[2].IPs[0], stB[2].IPs[0], stPrefix, stPrefix)
	}
	if ip := s.PodIP(idA); ip.String() != stA[0].IPs[0] {
		t.Fatalf("pod IP %s is not the default network's %s", ip, stA[0].IPs[0])
	}

	greet(t, nsA, "pod-a")
	greet(t, nsB, "pod-b")
	for i, dev := range []string{"eth0", "net1", "net2"} {
		ipA, ipB := net.ParseIP(stA[i].IPs[0]), net.ParseIP(stB[i].IPs[0])
		// Each address is reached through its own interface, never through the default route.
		if got := routeDev(t, nsB, ipA); got != dev {
			t.Fatalf("pod-b routes %s (pod-a's %s) through %s", ipA, dev, got)
		}
		if got := routeDev(t, nsA, ipB); got != dev {
			t.Fatalf("pod-a routes %s (pod-b's %s) through %s", ipB, dev, got)
		}
		fetch(t, nsB, net.JoinHostPort(ipA.String(), fmt.Sprint(containerPort)), "hello from pod-a")
		fetch(t, nsA, net.JoinHostPort(ipB.String(), fmt.Sprint(containerPort)), "hello from pod-b")
	}

	s.MustCrictl("rmp", "-f", idA, idB)
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q")); out != "" {
		t.Fatalf("crictl pods after rmp = %q", out)
	}
	if ports := framework.BridgePorts(t, stBridge); len(ports) > 0 {
		t.Fatalf("veths left on %s: %v", stBridge, ports)
	}
	if left := reservedIPs(t, mvIPAM); len(left) > 0 {
		t.Fatalf("macvlan addresses still reserved: %v", left)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := netlink.LinkByName(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().ParentIndex == pl.Attrs().Index && l.Attrs().Name != parent+"p" {
			t.Fatalf("link %s on %s left behind", l.Attrs().Name, parent)
		}
	}
	if cached, _ := filepath.Glob(filepath.Join(s.CacheDir, "results", "*")); len(cached) > 0 {
		t.Fatalf("libcni cache entries left: %v", cached)
	}
}

// defaultRoutes lists the IPv4 default routes of the main table in the netns at nsPath, as
// "via GATEWAY dev INTERFACE".
func defaultRoutes(t *testing.T, nsPath string) []string {
	t.Helper()
	var out []string
	err := netns.Do(nsPath, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("via %s dev %s", r.Gw, l.Attrs().Name))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("routes in %s: %v", nsPath, err)
	}
	return out
}

// reservedIPs lists the addresses host-local holds in dataDir.
func reservedIPs(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if base := d.Name(); net.ParseIP(base) != nil {
			out = append(out, base)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clip(out)
}
