//go:build linux && (kubelet_e2e || kubelet_bench)

package kubelet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/test/framework"
)

// node is a containerd of one build with a standalone kubelet on it, on a bridge network of
// its own whose chain is bridge + host-local, portmap and bandwidth.
type node struct {
	*framework.Containerd
	K *framework.Kubelet
	k int
}

var slots = framework.Slots{Procs: 16, Per: 12}

// bandwidthPlugin is the bandwidth plugin with its capability, which the pods' bandwidth
// annotations reach through the kubelet and containerd.
const bandwidthPlugin = `{"type": "bandwidth", "capabilities": {"bandwidth": true}}`

// newNode starts a containerd of build and a kubelet on it. emptyConfDir: the network's
// conflist is not in the conf dir (conflist writes it).
func newNode(t *testing.T, build string, emptyConfDir bool) *node {
	t.Helper()
	k := slots.Next()
	o := framework.ContainerdOptions{
		Build: build,
		Net:   framework.NewNet(t, "klnet", fmt.Sprintf("cnikl%d", k), fmt.Sprintf("10.154.%d.0/24", k%250+1)),
	}
	c := framework.StartContainerd(t, env, build, o)
	n := &node{Containerd: c, k: k}
	if emptyConfDir {
		// The file, not the dir: containerd v2.4.2 exits when its conf dir is deleted.
		if err := os.Remove(filepath.Join(c.ConfDir, "10-"+o.Net.Name+".conflist")); err != nil {
			t.Fatal(err)
		}
		if ok, msg := c.WaitNetworkReady(false, 15*time.Second); !ok {
			t.Fatalf("network still ready with an empty conf dir: %s", msg)
		}
	} else {
		n.writeConflist(t)
		if ok, msg := c.WaitNetworkReady(true, 15*time.Second); !ok {
			t.Fatalf("network not ready: %s", msg)
		}
	}
	n.K = framework.StartKubelet(t, c, fmt.Sprintf("node-%s-%d", build, k), framework.KubeletOptions{})
	return n
}

// writeConflist writes the node's network into its conf dir.
func (n *node) writeConflist(t *testing.T) {
	t.Helper()
	framework.WriteFileAtomic(t, n.ConfDir, "10-"+n.Net.Name+".conflist",
		framework.Conflist("1.0.0", n.Net.Name, n.Net.BridgePlugin(), framework.PortmapPlugin, bandwidthPlugin))
}

// hostPort is a host port of the node's own.
func (n *node) hostPort() int { return 34000 + n.k }

// state is what the node's pods can leave behind (framework.Containerd.NetState), the rules
// holding one of the sandbox IDs or the node's hostPort.
func (n *node) state(ids ...string) leakcheck.State {
	return n.NetState(append(ids, fmt.Sprintf("dport %d", n.hostPort()))...)
}

// leaks returns what the node's pods left: IPs, cache entries, veths, rules, netns mounts.
func (n *node) leaks(before leakcheck.State, ids ...string) error {
	return n.NetLeaks(before, append(ids, fmt.Sprintf("dport %d", n.hostPort()))...)
}

// waitNoLeaks waits up to d for the node's pods to leave nothing after before.
func (n *node) waitNoLeaks(d time.Duration, before leakcheck.State, ids ...string) error {
	deadline := time.Now().Add(d)
	for {
		err := n.leaks(before, ids...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A pod manifest, a v1.Pod as JSON. Pods end fast: a shell or a web server as PID 1 ignores
// SIGTERM, so the grace period is what a stop takes.
type pod map[string]any

func newPod(name string, annotations map[string]string, containers ...map[string]any) pod {
	return pod{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": name, "namespace": "default", "annotations": annotations},
		"spec": map[string]any{
			"containers":                    containers,
			"terminationGracePeriodSeconds": 1,
		},
	}
}

// sleeper is a busybox container that sleeps.
func sleeper() map[string]any {
	return map[string]any{"name": "sh", "image": framework.BusyboxImage, "imagePullPolicy": "Never", "command": []string{"sleep", "3600"}}
}

// web is a container serving HTTP on port 80 whose readiness probe GETs probePort; hostPort
// (0: none) maps a host port to 80.
func web(probePort, hostPort int) map[string]any {
	port := map[string]any{"containerPort": 80}
	if hostPort != 0 {
		port["hostPort"] = hostPort
	}
	return map[string]any{
		"name": "web", "image": framework.WebImage, "imagePullPolicy": "Never",
		"ports": []any{port},
		"readinessProbe": map[string]any{
			"httpGet":       map[string]any{"path": "/", "port": probePort},
			"periodSeconds": 1,
		},
	}
}

// run writes the manifests and waits until their pods are Ready with an IP.
func (n *node) run(t *testing.T, d time.Duration, pods map[string]pod) (map[string]framework.KubePod, error) {
	t.Helper()
	var names []string
	for name, p := range pods {
		n.K.WriteManifest(name, p)
		names = append(names, name)
	}
	return n.K.WaitReady(d, names...)
}

// sandbox returns the ready sandbox of the kubelet's pod of manifest name.
func (n *node) sandbox(t *testing.T, name string) string {
	t.Helper()
	id, err := n.K.SandboxOf(n.K.PodName(name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// exec runs a command in the container named ctr of the pod of manifest name.
func (n *node) exec(t *testing.T, name, ctr string, args ...string) (string, error) {
	t.Helper()
	id, err := n.K.ContainerOf(n.sandbox(t, name), ctr)
	if err != nil {
		return "", err
	}
	return n.Exec(id, args...)
}

// pausePID returns the PID of the sandbox's pause process.
func (n *node) pausePID(t *testing.T, sandbox string) int {
	t.Helper()
	st, err := framework.ParsePodStatus([]byte(n.MustCrictl("inspectp", "-o", "json", sandbox)))
	if err != nil {
		t.Fatal(err)
	}
	if st.Info.PID <= 0 {
		t.Fatalf("sandbox %s: no pause PID in crictl inspectp", sandbox[:12])
	}
	return st.Info.PID
}

// ifbLinks counts the host's ifb links (the bandwidth plugin's egress shaping).
func ifbLinks() (int, error) {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "ifb").Output()
	if err != nil {
		return 0, fmt.Errorf("ip link show type ifb: %w", err)
	}
	return strings.Count(string(out), "\n"), nil
}

// hostVeth returns the host end of the pod's eth0, through the container ctr of the pod of
// manifest name.
func (n *node) hostVeth(t *testing.T, name, ctr string) (string, error) {
	out, err := n.exec(t, name, ctr, "cat", "/sys/class/net/eth0/iflink")
	if err != nil {
		return "", err
	}
	var idx int
	if _, err := fmt.Sscan(strings.TrimSpace(out), &idx); err != nil {
		return "", fmt.Errorf("eth0's iflink %q: %w", out, err)
	}
	l, err := net.InterfaceByIndex(idx)
	if err != nil {
		return "", fmt.Errorf("host link %d (the pod's eth0 peer): %w", idx, err)
	}
	return l.Name, nil
}
