//go:build linux

package cluster_test

// The helpers the checks share: pods through crictl, dialling netexec in them, a node's
// readiness, and what a node holds of its pods' networks. They are kept here, apart from the
// checks, to move onto a shared test framework later.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/test/cluster/localcluster"
	"github.com/cnishim/cnishim/test/framework"
)

// netexecPort is the port netexec listens on in every pod, over TCP and UDP.
const netexecPort = 8080

// dialTimeout bounds one dial: a hang guard, not a latency assertion.
const dialTimeout = 20 * time.Second

// crictl runs crictl against n's server and returns its stdout; the error holds stderr.
func crictl(ctx context.Context, n *localcluster.Node, args ...string) (string, error) {
	cmd := n.CrictlCommand(ctx, env.crictl, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: crictl %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// hostPort is a CRI port mapping to netexecPort in the pod.
type hostPort struct {
	hostIP string // "" for every address
	proto  string // "TCP" or "UDP"
	port   int
}

// writePodConfig writes a crictl pod sandbox config for the pod name (its attempt-th sandbox)
// into dir and returns its path.
func writePodConfig(dir, name string, attempt int, ports ...hostPort) (string, error) {
	var pms []map[string]any
	for _, p := range ports {
		proto := map[string]int{"TCP": 0, "UDP": 1}[p.proto]
		pms = append(pms, map[string]any{"protocol": proto, "container_port": netexecPort, "host_port": p.port, "host_ip": p.hostIP})
	}
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "cluster-checks", "uid": "uid-" + name, "attempt": attempt},
		"labels":        map[string]string{"app": name},
		"linux":         map[string]any{},
		"port_mappings": pms,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.json", name, attempt))
	return path, os.WriteFile(path, b, 0o600)
}

// sandbox is what crictl inspectp tells of a pod sandbox.
type sandbox struct {
	ID    string
	State string // SANDBOX_READY or SANDBOX_NOTREADY
	NetNS string
	IPs   []netip.Addr // status.network.ip first, then additionalIps
}

// inspect runs crictl inspectp on the sandbox id.
func inspect(ctx context.Context, n *localcluster.Node, id string) (sandbox, error) {
	out, err := crictl(ctx, n, "inspectp", id)
	if err != nil {
		return sandbox{}, err
	}
	ps, err := framework.ParsePodStatus([]byte(out))
	if err != nil {
		return sandbox{}, fmt.Errorf("%s: %w", n.Name, err)
	}
	ips, err := ps.IPs()
	if err != nil {
		return sandbox{}, fmt.Errorf("%s: %w", n.Name, err)
	}
	sb := sandbox{ID: ps.Status.ID, State: ps.Status.State, NetNS: ps.Info.NetNSPath, IPs: ips}
	return sb, nil
}

// pod is a ready pod a check runs, with netexec answering in it under the pod's name.
type pod struct {
	name string
	node *localcluster.Node
	sandbox
}

// String names the pod and its node.
func (p *pod) String() string { return p.name + "@" + p.node.Name }

// ip is the pod's address of the family of v4 (true: IPv4).
func (p *pod) ip(t *testing.T, v4 bool) netip.Addr {
	t.Helper()
	for _, ip := range p.IPs {
		if ip.Is4() == v4 {
			return ip
		}
	}
	t.Fatalf("pod %s has no IPv4=%t address among %v", p, v4, p.IPs)
	return netip.Addr{}
}

// runPod runs the pod name on n through crictl, with the given host ports, starts netexec in
// it, and removes both at cleanup.
func runPod(t *testing.T, n *localcluster.Node, name string, ports ...hostPort) *pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg, err := writePodConfig(t.TempDir(), name, 0, ports...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := crictl(ctx, n, "runp", cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { removePod(t, n, id) })
	sb, err := inspect(ctx, n, id)
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != "SANDBOX_READY" || sb.NetNS == "" {
		t.Fatalf("pod %s on %s: state %s, netns %q; want ready with a netns", name, n.Name, sb.State, sb.NetNS)
	}
	ne, err := localcluster.StartNetexec(ctx, env.netexec, sb.NetNS, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ne.Stop() })
	return &pod{name: name, node: n, sandbox: sb}
}

// removePod stops and removes the sandbox id, as the kubelet does when a pod goes.
func removePod(t *testing.T, n *localcluster.Node, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
	defer cancel()
	if _, err := crictl(ctx, n, "rmp", "-f", id); err != nil {
		t.Errorf("remove pod: %v", err)
	}
}

// keepServer makes sure, at cleanup, that n's server runs again, should a check that kills it
// stop before starting it again: the checks after it need the node.
func keepServer(t *testing.T, n *localcluster.Node) {
	t.Cleanup(func() {
		if n.ServerPID() != 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 2*time.Minute)
		defer cancel()
		if err := n.StartServer(ctx); err != nil {
			t.Errorf("start the server of %s again: %v", n.Name, err)
		}
	})
}

// ask dials netexec at addr:netexecPort over proto from inside netnsPath and checks the answer
// names want and, when wantPeer is valid, that the server saw wantPeer as the client.
func ask(ctx context.Context, netnsPath, proto string, addr netip.Addr, port int, want string, wantPeer netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ap := netip.AddrPortFrom(addr, uint16(port)).String()
	name, peer, err := localcluster.Dial(ctx, netnsPath, proto, ap)
	if err != nil {
		return err
	}
	if name != want {
		return fmt.Errorf("%s %s from %s: answered by %q; want %q", proto, ap, netnsPath, name, want)
	}
	if wantPeer.IsValid() {
		got, err := netip.ParseAddrPort(peer)
		if err != nil || got.Addr().Unmap() != wantPeer {
			return fmt.Errorf("%s %s from %s: the server saw the client as %q; want %s (no SNAT)", proto, ap, netnsPath, peer, wantPeer)
		}
	}
	return nil
}

// networkCondition is the NetworkReady condition crictl info reports for n.
type networkCondition struct {
	Status  bool   `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// networkReady reads the NetworkReady condition of n's server through crictl info.
func networkReady(ctx context.Context, n *localcluster.Node) (networkCondition, error) {
	out, err := crictl(ctx, n, "info")
	if err != nil {
		return networkCondition{}, err
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type string `json:"type"`
				networkCondition
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return networkCondition{}, fmt.Errorf("%s: crictl info: %w\n%s", n.Name, err, out)
	}
	for _, c := range info.Status.Conditions {
		if c.Type == "NetworkReady" {
			return c.networkCondition, nil
		}
	}
	return networkCondition{}, fmt.Errorf("%s: crictl info has no NetworkReady condition:\n%s", n.Name, out)
}

// waitFor polls cond every 100ms until it holds or ctx is done; the error is cond's last.
func waitFor(ctx context.Context, cond func() error) error {
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ipamDir is host-local's dataDir on n (localcluster's kindnet conflist).
func ipamDir(n *localcluster.Node) string { return filepath.Join(n.Dir, "cni-ipam-state") }

// reservations lists the IPs host-local has reserved on n.
func reservations(n *localcluster.Node) leakcheck.State {
	return leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{ipamDir(n)}})
}

// nodeLeaks lists what n holds of pods that are gone: host-local reservations, libcni cache
// entries, pod netns mounts, ptp's (or bridge's) host veths and portmap's per-pod DNAT chains
// (CNI-DN-*), in n's namespace, and on flannel the plugin's saved delegate configs.
func nodeLeaks(ctx context.Context, n *localcluster.Node) []string {
	st := leakcheck.Take(leakcheck.Scope{
		HostLocalDirs: []string{ipamDir(n)},
		CacheDir:      n.CacheDir,
		NetnsDir:      filepath.Join(n.StateDir, "netns"),
	})
	out := leakcheck.Leaks(leakcheck.State{}, st)
	if cl.Config.Network == "flannel" {
		saved, err := os.ReadDir(localcluster.FlannelDataDir(n))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			out = append(out, fmt.Sprintf("could not check: %v", err))
		}
		for _, e := range saved {
			out = append(out, "flannel plugin delegate config: "+e.Name())
		}
	}
	links, err := n.Exec(ctx, "ip", "-o", "link", "show", "type", "veth")
	if err != nil {
		out = append(out, fmt.Sprintf("could not check: %v", err))
	}
	for _, l := range strings.Split(links, "\n") {
		// "5: veth1234@if2: <...": eth0 is the node's own link to the underlay.
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if name != "eth0" {
			out = append(out, "host veth: "+name)
		}
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		rules, err := n.Exec(ctx, save)
		if err != nil {
			out = append(out, fmt.Sprintf("could not check: %v", err))
		}
		for _, l := range strings.Split(rules, "\n") {
			if strings.Contains(l, "CNI-DN-") {
				out = append(out, save+": "+l)
			}
		}
	}
	pods, err := crictl(ctx, n, "pods", "-q")
	if err != nil && n.ServerPID() != 0 {
		out = append(out, fmt.Sprintf("could not check: %v", err))
	}
	for _, id := range strings.Fields(pods) {
		out = append(out, "pod sandbox: "+id)
	}
	slices.Sort(out)
	for i := range out {
		out[i] = n.Name + ": " + out[i]
	}
	return out
}
