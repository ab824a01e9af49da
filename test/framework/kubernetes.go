//go:build linux

package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
)

// clusterBinaries are what a Cluster runs from <Env.Kubernetes>/bin, the kubelet aside.
var clusterBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "e2e.test", "ginkgo"}

// The cluster's service network and DNS, as kind's.
const (
	serviceCIDR   = "10.96.0.0/16"
	clusterDNSIP  = "10.96.0.10"
	clusterDomain = "cluster.local"
	// kubernetesServiceIP is the first of serviceCIDR: the kubernetes Service's.
	kubernetesServiceIP = "10.96.0.1"
)

// Cluster is a Kubernetes cluster of network-namespace nodes, as kind's nodes are containers:
// node i is a network namespace plugged into a bridge in a namespace of the cluster's (Switch),
// so the host's namespace has no link of the cluster's and nothing routes between the two, with a
// Containerd of the cluster's build, a kubelet registered with the API server, and kube-proxy,
// all in the node's own mount namespace (the Containerd's holder). Node 0's network namespace
// also holds the control plane: etcd, the API server, the controller manager and the scheduler.
// The pod network is kind's kindnet: ptp + host-local (node i's pods in a /24 of its own) +
// portmap, with a route on every node to every other node's pods, as kindnetd keeps. CoreDNS
// runs as a Deployment behind the kube-dns Service. Images come from the test images and
// <Env.Kubernetes>/images; nothing is pulled.
//
// Its cleanup stops every kubelet, removes every pod (the Containerds' cleanups), fails the test
// if a node still has a pod's reservation or link (a leak), stops kube-proxy and the control
// plane, and deletes the namespaces it made and the dirs.
type Cluster struct {
	T     *testing.T
	Env   *Env
	Build string // StockContainerd or CnishimContainerd
	// Dir holds the certificates, kubeconfig, etcd's data and the control plane's logs.
	Dir string
	// Kubeconfig is an admin's (system:masters), for the API server on node 0.
	Kubeconfig string
	// Switch is the network namespace (a name under /run/netns) holding the bridge br0 the
	// nodes' eth0 are plugged into.
	Switch string
	Nodes  []*ClusterNode

	slot    int
	podCIDR string   // holds every node's pod subnet
	netns   []string // the namespaces made, to delete
	control []*clusterDaemon
}

// ClusterNode is one node of a Cluster.
type ClusterNode struct {
	Name  string
	Index int
	// Netns is the node's network namespace, as a path; IP its address on the cluster's
	// bridge; PodCIDR its pods' subnet.
	Netns   string
	IP      string
	PodCIDR string
	// IPAMDir is host-local's store of the node's pods.
	IPAMDir    string
	Containerd *Containerd
	Kubelet    *Kubelet
	proxy      *clusterDaemon
}

// clusterDaemon is a process of the cluster's other than containerd and the kubelet: the
// control plane's, kube-proxy.
type clusterDaemon struct {
	name, log string
	daemon
}

// clusterSeq numbers clusters, for their bridge, link and namespace names and subnets.
var clusterSeq = Slots{Procs: 8, Per: 4}

// StartCluster starts a cluster of nodes nodes whose containerd is of build, and returns once
// every node is Ready and CoreDNS serves.
func StartCluster(t *testing.T, e *Env, build string, nodes int) *Cluster {
	t.Helper()
	if e.Kubernetes == "" || e.Kubelet == "" || e.Containerd == "" {
		t.Fatal("framework: Needs.Kubernetes, Needs.Kubelet and Needs.Containerd must be set")
	}
	if nodes < 1 {
		t.Fatalf("a cluster of %d nodes", nodes)
	}
	slot := clusterSeq.Next()
	dir, err := os.MkdirTemp("/tmp", fmt.Sprintf("k8s%d-", slot))
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		T: t, Env: e, Build: build, Dir: dir, slot: slot,
		podCIDR: fmt.Sprintf("10.%d.0.0/16", 200+slot),
		Switch:  fmt.Sprintf("cnishim-k8s%d-sw", slot),
	}
	// Registered first, so it runs last: after every node's Containerd and kubelet are gone.
	t.Cleanup(c.cleanup)
	// The switch: a namespace of its own holding the bridge and the nodes' veth ends, so that
	// the host's namespace has no link of the cluster's and sees none of its packets.
	c.addNetns(c.Switch)
	c.mustRun("ip", "-n", c.Switch, "link", "add", "br0", "type", "bridge")
	c.mustRun("ip", "-n", c.Switch, "link", "set", "br0", "up")
	for i := range nodes {
		n := &ClusterNode{
			Name: fmt.Sprintf("node%d", i), Index: i,
			IP:      fmt.Sprintf("172.30.%d.%d", slot, 10+i),
			PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 200+slot, i),
			IPAMDir: filepath.Join(dir, fmt.Sprintf("node%d-ipam", i)),
		}
		ns := fmt.Sprintf("cnishim-k8s%d-%d", slot, i)
		c.addNetns(ns)
		n.Netns = "/run/netns/" + ns
		c.Nodes = append(c.Nodes, n)
		port := fmt.Sprintf("node%d", i)
		c.mustRun("ip", "-n", c.Switch, "link", "add", port, "type", "veth", "peer", "eth0", "netns", ns)
		c.mustRun("ip", "-n", c.Switch, "link", "set", port, "master", "br0", "up")
		c.mustRun("ip", "-n", ns, "addr", "add", n.IP+"/24", "dev", "eth0")
		c.mustRun("ip", "-n", ns, "link", "set", "eth0", "up")
		c.mustRun("ip", "-n", ns, "link", "set", "lo", "up")
		c.mustRun("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// No default route (nothing leaves the cluster), so the Service network needs one of
		// its own for the node's own connections: they are routed before kube-proxy's DNAT,
		// and rerouted after it.
		c.mustRun("ip", "-n", ns, "route", "add", serviceCIDR, "dev", "eth0", "src", n.IP)
	}
	for _, n := range c.Nodes {
		for _, m := range c.Nodes {
			if m != n {
				c.mustRun("ip", "-n", filepath.Base(n.Netns), "route", "add", m.PodCIDR, "via", m.IP)
			}
		}
	}
	c.writeCerts()
	c.startControlPlane()
	for _, n := range c.Nodes {
		c.startNode(n)
	}
	c.startCoreDNS()
	return c
}

// addNetns adds the network namespace name (under /run/netns), which the cleanup deletes; one
// of that name that exists already (another cluster's) fails the test and is left alone.
func (c *Cluster) addNetns(name string) {
	c.T.Helper()
	c.mustRun("ip", "netns", "add", name)
	c.netns = append(c.netns, name)
}

// mustRun runs a command that sets the cluster up, failing the test if it fails.
func (c *Cluster) mustRun(argv ...string) {
	c.T.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		c.T.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// path is the path of the cluster's file name.
func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

func (c *Cluster) bin(name string) string { return filepath.Join(c.Env.Kubernetes, "bin", name) }

// startDaemon starts a cluster daemon, argv run by cmd's nsenter prefix, logging to its own file.
func (c *Cluster) startDaemon(name string, cmd *exec.Cmd) *clusterDaemon {
	c.T.Helper()
	d := &clusterDaemon{name: name, log: c.path(name + ".log")}
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.T.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.T.Fatalf("start %s: %v", name, err)
	}
	d.started(cmd)
	return d
}

// inNode0 is the command running argv in node 0's network namespace, where the control plane
// is, with KubectlEnv (kubectl, and e2e.test's kubectl).
func (c *Cluster) inNode0(argv ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.Nodes[0].Netns, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), c.KubectlEnv()...)
	return cmd
}

// KubectlEnv is the environment kubectl needs besides the caller's: its cache in the cluster's
// dir, not $HOME/.kube/cache.
func (c *Cluster) KubectlEnv() []string { return []string{"KUBECACHEDIR=" + c.path("kubectl-cache")} }

// startControlPlane starts etcd, the API server, the controller manager and the scheduler in
// node 0's network namespace, and waits for the API server to be ready.
func (c *Cluster) startControlPlane() {
	c.T.Helper()
	etcd := c.startDaemon("etcd", c.inNode0(c.bin("etcd"), "--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--listen-metrics-urls", "", "--unsafe-no-fsync"))
	c.control = append(c.control, etcd)
	api := c.startDaemon("kube-apiserver", c.inNode0(c.bin("kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379", "--advertise-address", c.Nodes[0].IP, "--secure-port", "6443",
		"--service-cluster-ip-range", serviceCIDR, "--allow-privileged",
		"--client-ca-file", c.path("ca.crt"), "--tls-cert-file", c.path("apiserver.crt"), "--tls-private-key-file", c.path("apiserver.key"),
		"--service-account-issuer", "https://kubernetes.default.svc."+clusterDomain,
		"--service-account-key-file", c.path("sa.pub"), "--service-account-signing-key-file", c.path("sa.key"),
		"--authorization-mode", "Node,RBAC", "--kubelet-client-certificate", c.path("admin.crt"),
		"--kubelet-client-key", c.path("admin.key"), "--kubelet-preferred-address-types", "InternalIP",
		"--cert-dir", c.path("apiserver-certs"),
		"--profiling=false", "--v=1"))
	c.control = append(c.control, api)
	if err := awaitServing("kube-apiserver", api.log, api.exited, 500*time.Millisecond, func() bool {
		_, err := c.Kubectl(context.Background(), "get", "--raw", "/readyz")
		return err == nil
	}); err != nil {
		c.T.Fatal(err)
	}
	// Each recorded as soon as it runs, so that a failure starting the next stops it.
	c.control = append(c.control, c.startDaemon("kube-controller-manager", c.inNode0(c.bin("kube-controller-manager"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--service-account-private-key-file", c.path("sa.key"), "--root-ca-file", c.path("ca.crt"),
		"--use-service-account-credentials", "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--service-cluster-ip-range", serviceCIDR, "--cert-dir", c.path("controller-manager-certs"),
		"--flex-volume-plugin-dir", c.path("volume-plugins"), "--v=1")))
	c.control = append(c.control, c.startDaemon("kube-scheduler", c.inNode0(c.bin("kube-scheduler"),
		"--kubeconfig", c.Kubeconfig, "--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--v=1")))
}

// startNode starts node n's containerd with the kindnet conflist, its kubelet, registered with
// the API server, and kube-proxy.
func (c *Cluster) startNode(n *ClusterNode) {
	c.T.Helper()
	n.Containerd = StartContainerd(c.T, c.Env, fmt.Sprintf("%s-%s", n.Name, c.Build), ContainerdOptions{
		Build: c.Build, Netns: n.Netns, Images: []string{filepath.Join(c.Env.Kubernetes, "images")},
	})
	WriteFileAtomic(c.T, n.Containerd.ConfDir, "10-kindnet.conflist", Conflist("0.3.1", "kindnet", fmt.Sprintf(`{
      "type": "ptp", "ipMasq": false, "mtu": 1500,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
    }`, n.IPAMDir, n.PodCIDR), PortmapPlugin))
	n.Kubelet = StartKubelet(c.T, n.Containerd, n.Name, KubeletOptions{
		Kubeconfig: c.Kubeconfig, NodeIP: n.IP, ClusterDNS: clusterDNSIP, ClusterDomain: clusterDomain,
	})
	c.startProxy(n)
}

// startProxy starts kube-proxy on node n, in iptables mode, leaving the host's conntrack
// settings alone (they are not the node's own).
func (c *Cluster) startProxy(n *ClusterNode) {
	c.T.Helper()
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
bindAddress: %s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 0.0.0.0:10256
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, c.Kubeconfig, n.Name, c.podCIDR, n.IP)
	f := c.path(n.Name + "-kube-proxy.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		c.T.Fatal(err)
	}
	n.proxy = c.startDaemon(n.Name+"-kube-proxy", n.Containerd.enter(c.bin("kube-proxy"), "--config", f, "--v=1"))
}

// InNode runs argv in node n's network namespace and returns its stdout; an error carries its
// stderr.
func (c *Cluster) InNode(n *ClusterNode, argv ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.Netns, "--"}, argv...)...)
	return output(c.T.Context(), cmd, "node "+n.Name+": "+strings.Join(argv, " "))
}

// RebootNode does to node n what a reboot does: its kubelet and kube-proxy stopped, its
// containerd rebooted (Containerd.Reboot: every pod's process and netns gone), and the node's
// packet filter rules, which a boot starts without, flushed. RestartNode boots it.
func (c *Cluster) RebootNode(n *ClusterNode) {
	c.T.Helper()
	n.Kubelet.Kill(syscall.SIGKILL)
	if err := n.proxy.kill(syscall.SIGKILL); err != nil {
		c.T.Error(err)
	}
	n.Containerd.Reboot()
	flush := "for t in filter nat mangle raw; do iptables -t $t -F && iptables -t $t -X || exit 1; done"
	if out, err := c.InNode(n, "sh", "-c", flush); err != nil {
		c.T.Fatalf("%v %s", err, out)
	}
}

// RestartNode starts node n's containerd, kubelet and kube-proxy again, after RebootNode.
func (c *Cluster) RestartNode(n *ClusterNode) {
	c.T.Helper()
	n.Containerd.Start()
	n.Kubelet.Start()
	c.startProxy(n)
}

// Kubectl runs kubectl as the admin, from node 0's network namespace, and returns its stdout;
// an error carries its stderr.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := c.inNode0(append([]string{c.bin("kubectl"), "--kubeconfig", c.Kubeconfig, "--request-timeout", "30s"}, args...)...)
	return output(ctx, cmd, "kubectl "+strings.Join(args, " "))
}

// RunInNode0 runs argv in node 0's network namespace, where the API server is, with its output
// appended to the file log, until it exits or the test's context ends.
func (c *Cluster) RunInNode0(t *testing.T, log string, argv ...string) error {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := c.inNode0(argv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return runCtx(t.Context(), cmd)
}

// KubectlApply applies the manifests in yaml.
func (c *Cluster) KubectlApply(ctx context.Context, yaml string) error {
	cmd := c.inNode0(c.bin("kubectl"), "--kubeconfig", c.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	_, err := output(ctx, cmd, "kubectl apply")
	return err
}

// output runs cmd (runCtx) and returns its stdout; an error names the command as what and
// carries its stderr.
func output(ctx context.Context, cmd *exec.Cmd, what string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runCtx(ctx, cmd); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// runCtx runs cmd, killing it when ctx ends (and its process group, when it leads one).
func runCtx(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

// Reservations are the addresses host-local holds for the node's pods, sorted.
func (n *ClusterNode) Reservations() ([]string, error) {
	st := leakcheck.Take(leakcheck.Scope{HostLocalDirs: []string{n.IPAMDir}})
	if len(st.Problems) > 0 {
		return nil, fmt.Errorf("node %s: host-local's store: %s", n.Name, strings.Join(st.Problems, "; "))
	}
	ips := make([]string, 0, len(st.IPs))
	for _, ip := range st.IPs {
		ips = append(ips, path.Base(ip)) // <network>/<ip>
	}
	slices.Sort(ips)
	return ips, nil
}

// checkNodesLeftNothing fails the test if a node, its pods all removed, still has a pod's
// reservation in host-local's store or a link other than lo and eth0 (a pod's veth).
func (c *Cluster) checkNodesLeftNothing() {
	t := c.T
	for _, n := range c.Nodes {
		if n.Containerd == nil {
			continue
		}
		held, err := n.Reservations()
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, ip := range held {
			t.Errorf("cleanup: node %s: host-local still holds %s with every pod removed", n.Name, ip)
		}
		out, err := exec.Command("ip", "-n", filepath.Base(n.Netns), "-o", "link", "show").Output()
		if err != nil {
			t.Errorf("cleanup: node %s: links: %v", n.Name, err)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				if name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@"); name != "lo" && name != "eth0" {
					t.Errorf("cleanup: node %s: link %s left with every pod removed", n.Name, name)
				}
			}
		}
	}
}

// cleanup stops kube-proxy and the control plane, checks that the nodes left nothing, and
// removes the namespaces (with them the links) and the dir; the nodes' kubelets and Containerds
// are gone by then (their cleanups ran first).
func (c *Cluster) cleanup() {
	t := c.T
	// kube-proxies first, then the control plane in the reverse of its start.
	var daemons []*clusterDaemon
	for _, n := range c.Nodes {
		if n.proxy != nil {
			daemons = append(daemons, n.proxy)
		}
	}
	for i := len(c.control) - 1; i >= 0; i-- {
		daemons = append(daemons, c.control[i])
	}
	for _, d := range daemons {
		if t.Failed() {
			t.Logf("%s log tail:\n%s", d.name, TailFile(d.log, 6000))
		}
		keepLog(d.log, filepath.Base(c.Dir)+"-"+d.name+"-"+c.Build+".log")
		d.forget()
		if err := d.kill(syscall.SIGTERM); err != nil {
			t.Errorf("cleanup: %s: %v", d.name, err)
		}
	}
	c.checkNodesLeftNothing()
	for _, ns := range c.netns {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v %s", ns, err, out)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
