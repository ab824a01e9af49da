//go:build linux

// The cluster tests need root and bring up clusters of real servers (internal/testing/roottest decides
// what a run without root does).

package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/test/framework"
)

// env holds the prerequisites, found once.
var env struct {
	cnishim, cniBin, crictl, netexec string
}

func TestMain(m *testing.M) {
	framework.Main(m, "test/cluster/localcluster", framework.Needs{
		Plugins: []string{"ptp", "host-local", "portmap", "loopback"},
		Crictl:  true,
		Cnishim: true,
		Before: func() (func(), error) {
			e := framework.MainEnv()
			env.cnishim, env.cniBin, env.crictl = e.Cnishim, e.CNIBin, e.Crictl
			dir, err := os.MkdirTemp("", "localcluster-bin-")
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			env.netexec = filepath.Join(dir, "netexec")
			if err := BuildNetexec(ctx, env.netexec); err != nil {
				_ = os.RemoveAll(dir)
				return nil, err
			}
			return func() { _ = os.RemoveAll(dir) }, nil
		},
	})
}

var seq atomic.Int32

// up brings a cluster up for t under a prefix no other test or run uses, and tears it down at
// cleanup if the test did not.
func up(t *testing.T, nodes int, family IPFamily) *Cluster {
	t.Helper()
	cfg := Config{
		Nodes:     nodes,
		IPFamily:  family,
		Network:   "kindnet",
		WorkDir:   filepath.Join(t.TempDir(), "cluster"),
		Cnishim:   env.cnishim,
		CNIBinDir: env.cniBin,
		Prefix:    fmt.Sprintf("lt%d%d", os.Getpid()%100000, seq.Add(1)%10),
		ServeArgs: []string{"-v", "4"},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.Log)
				t.Logf("%s serve.log:\n%s", n.Name, b)
			}
		}
		if err := c.Down(context.Background()); err != nil {
			t.Errorf("Down at cleanup: %v", err)
		}
	})
	return c
}

// rootRules are the root namespace's iptables and ip6tables rules mentioning the cluster's
// addresses (none should: the cluster never touches the root namespace's rules).
func rootRules(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		b, err := exec.CommandContext(t.Context(), bin).Output()
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "10.244.") || strings.Contains(l, "fd00:10:244:") || strings.Contains(l, "172.31.250.") {
				out = append(out, l)
			}
		}
	}
	return out
}

func TestUpDown(t *testing.T) {
	t.Parallel() // with the other tests' clusters, on the same address plan
	for _, tc := range []struct {
		family   IPFamily
		ips      int  // addresses per node
		keepLogs bool // Down keeps the servers' logs
	}{
		{IPv4, 1, true},
		{DualStack, 2, false},
	} {
		t.Run(string(tc.family), func(t *testing.T) {
			rulesBefore := rootRules(t)
			c := up(t, 2, tc.family)

			for _, n := range c.Nodes {
				if len(n.IPs) != tc.ips || len(n.PodCIDRs) != tc.ips {
					t.Errorf("%s: IPs %v, pod CIDRs %v; want %d of each", n.Name, n.IPs, n.PodCIDRs, tc.ips)
				}
				if n.ServerPID() == 0 {
					t.Errorf("%s: no server runs", n.Name)
				}
				if err := statusReady(t, n); err != nil {
					t.Errorf("%s: %v", n.Name, err)
				}
				for _, sysctl := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
					if out, err := n.Exec(t.Context(), "cat", sysctl); err != nil || strings.TrimSpace(out) != "1" {
						t.Errorf("%s: %s = %q, %v; want 1", n.Name, sysctl, out, err)
					}
				}
			}
			// kindnetd's routes: each node reaches the other's pod subnets via its address.
			routes, err := c.Node(0).Exec(t.Context(), "ip", "-4", "route", "show", c.Node(1).PodCIDRs[0].String())
			if want := "via " + c.Node(1).IPs[0].String(); err != nil || !strings.Contains(routes, want) {
				t.Errorf("node0's route to %s: %q, %v; want %q", c.Node(1).PodCIDRs[0], routes, err, want)
			}
			if tc.family == DualStack {
				routes, err := c.Node(1).Exec(t.Context(), "ip", "-6", "route", "show", c.Node(0).PodCIDRs[1].String())
				if want := "via " + c.Node(0).IPs[1].String(); err != nil || !strings.Contains(routes, want) {
					t.Errorf("node1's route to %s: %q, %v; want %q", c.Node(0).PodCIDRs[1], routes, err, want)
				}
			}
			// A pod on each node, so that Down has pods to remove.
			for _, n := range c.Nodes {
				runPod(t, n, "pod-"+n.Name)
			}

			// Down from the state file, as another process would.
			loaded, err := Load(c.StateFile())
			if err != nil {
				t.Fatal(err)
			}
			// What Down does first: remove every pod through the servers.
			for _, n := range loaded.Nodes {
				if err := n.RemovePods(t.Context()); err != nil {
					t.Fatal(err)
				}
				if out, err := n.CrictlCommand(t.Context(), env.crictl, "pods", "-q").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
					t.Errorf("%s: pods after RemovePods: %q, %v; want none", n.Name, out, err)
				}
			}
			loaded.Config.KeepLogs = tc.keepLogs
			var pids []int
			for _, n := range loaded.Nodes {
				pid := n.ServerPID()
				if pid == 0 {
					t.Fatalf("%s: the loaded cluster sees no server", n.Name)
				}
				pids = append(pids, pid)
			}
			if err := loaded.Down(t.Context()); err != nil {
				t.Fatalf("Down: %v", err)
			}
			for _, l := range append([]string{c.Bridge}, hostVeths(c)...) {
				if _, err := netlink.LinkByName(l); err == nil {
					t.Errorf("link %s left", l)
				}
			}
			if m, err := Mounts(c.Config.WorkDir); err != nil || len(m) > 0 {
				t.Errorf("mounts left under the work dir: %v, %v", m, err)
			}
			for _, pid := range pids {
				if running(pid) {
					t.Errorf("server pid %d still runs", pid)
				}
			}
			if tc.keepLogs {
				// Only the logs are left.
				var left []string
				_ = filepath.WalkDir(c.Config.WorkDir, func(p string, d os.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						left = append(left, p)
					}
					return nil
				})
				if want := []string{c.Node(0).Log, c.Node(1).Log}; strings.Join(left, " ") != strings.Join(want, " ") {
					t.Errorf("files left with KeepLogs: %v; want %v", left, want)
				}
			} else if _, err := os.Stat(c.Config.WorkDir); !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(c.Config.WorkDir)
				t.Errorf("work dir %s left (%v): %v", c.Config.WorkDir, err, entries)
			}
			if after := rootRules(t); strings.Join(after, "\n") != strings.Join(rulesBefore, "\n") {
				t.Errorf("root namespace rules on the cluster's addresses changed:\nbefore %q\nafter  %q", rulesBefore, after)
			}
			// A second Down does no harm.
			if err := c.Down(t.Context()); err != nil {
				t.Errorf("second Down: %v", err)
			}
		})
	}
}

// running reports whether pid runs; a zombie (exited, its parent yet to reap it) does not.
func running(pid int) bool {
	_, zombie, err := procStat(pid)
	return err == nil && !zombie
}

func hostVeths(c *Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.HostVeth)
	}
	return out
}

func statusReady(t *testing.T, n *Node) error {
	conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	return ready(t.Context(), runtimeapi.NewRuntimeServiceClient(conn))
}

// pod is what runPod made.
type pod struct {
	id    string
	netns string
	ips   []netip.Addr
}

// runPod runs a pod on n through crictl and returns its netns and IPs.
func runPod(t *testing.T, n *Node, name string) pod {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), name+".json")
	spec := fmt.Sprintf(`{"metadata": {"name": %q, "namespace": "default", "uid": "uid-%s"}}`, name, name)
	if err := os.WriteFile(cfg, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := n.CrictlCommand(t.Context(), env.crictl, "runp", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: crictl runp: %v\n%s", n.Name, err, out)
	}
	p := pod{id: strings.TrimSpace(string(out))}
	out, err = n.CrictlCommand(t.Context(), env.crictl, "inspectp", p.id).Output()
	if err != nil {
		t.Fatalf("%s: crictl inspectp: %v", n.Name, err)
	}
	ps, err := framework.ParsePodStatus(out)
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	p.netns = ps.Info.NetNSPath
	if p.ips, err = ps.IPs(); err != nil {
		t.Fatalf("%s: pod %s: %v", n.Name, name, err)
	}
	return p
}

// TestPodToPodAcrossNodes checks the network Up makes: a pod on one node reaches a pod on
// another, over TCP and UDP and every family, and the answer shows the client pod's own IP.
func TestPodToPodAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, family := range []IPFamily{IPv4, DualStack} {
		t.Run(string(family), func(t *testing.T) {
			c := up(t, 2, family)
			client, server := runPod(t, c.Node(0), "client"), runPod(t, c.Node(1), "server")
			t.Cleanup(func() {
				for i, p := range []pod{client, server} {
					if out, err := c.Node(i).CrictlCommand(context.Background(), env.crictl, "rmp", "-f", p.id).CombinedOutput(); err != nil {
						t.Errorf("rmp %s: %v\n%s", p.id, err, out)
					}
				}
			})
			if len(server.ips) != len(c.Node(1).PodCIDRs) {
				t.Fatalf("server pod IPs %v; want one in each of %v", server.ips, c.Node(1).PodCIDRs)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			ne, err := StartNetexec(ctx, env.netexec, server.netns, "server")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ne.Stop() })
			for i, ip := range server.ips {
				if !c.Node(1).PodCIDRs[i].Contains(ip) {
					t.Errorf("server pod IP %s not in node1's %s", ip, c.Node(1).PodCIDRs[i])
				}
				for _, proto := range []string{"tcp", "udp"} {
					addr := netip.AddrPortFrom(ip, 8080).String()
					name, peer, err := Dial(ctx, client.netns, proto, addr)
					if err != nil {
						t.Errorf("%s %s: %v", proto, addr, err)
						continue
					}
					peerIP, err := netip.ParseAddrPort(peer)
					if name != "server" || err != nil || peerIP.Addr() != client.ips[i] {
						t.Errorf("%s %s: answer %q %q; want server and the client pod's %s", proto, addr, name, peer, client.ips[i])
					}
				}
			}
		})
	}
}

// TestUpPrefixTaken checks that an Up on a prefix in use fails and, cleaning up after itself,
// leaves the cluster that has the prefix alone.
func TestUpPrefixTaken(t *testing.T) {
	t.Parallel()
	c := up(t, 1, IPv4)
	cfg := c.Config
	cfg.WorkDir = filepath.Join(t.TempDir(), "second")
	if second, err := Up(t.Context(), cfg); err == nil {
		_ = second.Down(context.Background())
		t.Fatalf("a second Up on prefix %q succeeded", cfg.Prefix)
	} else if !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Up: %v; want the bridge named as taken", err)
	}
	if _, err := netlink.LinkByName(c.Bridge); err != nil {
		t.Errorf("the first cluster's bridge: %v", err)
	}
	if _, err := netlink.LinkByName(c.Node(0).HostVeth); err != nil {
		t.Errorf("the first cluster's veth: %v", err)
	}
	if err := statusReady(t, c.Node(0)); err != nil {
		t.Errorf("the first cluster's server: %v", err)
	}
	if _, err := os.Stat(cfg.WorkDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second Up left its work dir: %v", err)
	}
}

// TestServerRestart checks the node server methods: a killed or stopped server starts again
// and finds its pod, and Down after a kill (no server to remove the pod) still leaves no
// mount.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	c := up(t, 1, IPv4)
	n := c.Node(0)
	p := runPod(t, n, "survivor")
	for _, end := range []struct {
		name string
		fn   func() error
	}{
		{"KillServer", n.KillServer},
		{"StopServer", n.StopServer},
	} {
		pid := n.ServerPID()
		if err := end.fn(); err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		if got := n.ServerPID(); got != 0 {
			t.Fatalf("after %s: ServerPID %d; want 0", end.name, got)
		}
		if running(pid) {
			t.Fatalf("after %s: pid %d still runs", end.name, pid)
		}
		if err := n.StartServer(t.Context()); err != nil {
			t.Fatalf("StartServer after %s: %v", end.name, err)
		}
		out, err := n.CrictlCommand(t.Context(), env.crictl, "pods", "-q", "--state", "ready").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != p.id {
			t.Fatalf("ready pods after %s and a restart: %q, %v; want %s", end.name, out, err, p.id)
		}
	}
	if err := n.StartServer(t.Context()); err == nil {
		t.Errorf("StartServer with a server running succeeded")
	}
	if err := n.KillServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.Down(t.Context()); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if m, err := Mounts(c.Config.WorkDir); err != nil || len(m) > 0 {
		t.Errorf("mounts left under the work dir: %v, %v", m, err)
	}
}
