//go:build linux && k8s_e2e

package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

// The environment hack/local-cluster.sh up --kubernetes gives TestLocalKubernetesCluster.
const (
	localDirEnv   = "CNISHIM_K8S_LOCAL_DIR"   // the work dir: the cluster's env file goes there
	localNodesEnv = "CNISHIM_K8S_LOCAL_NODES" // the number of nodes (default 2)
	localBuildEnv = "CNISHIM_K8S_LOCAL_BUILD" // the containerd build (default cnishim)
)

// TestLocalKubernetesCluster is the cluster of hack/local-cluster.sh up --kubernetes, which runs
// it alone: it brings a cluster up, writes <work dir>/cluster.env (the kubeconfig, the nodes'
// namespaces, what the cluster made on the host) and holds the cluster until SIGTERM or SIGINT
// (local-cluster.sh down sends one); its cleanup then takes everything down, as every test's
// does. Run any other way, it skips: it is a cluster's lifetime, not a check.
func TestLocalKubernetesCluster(t *testing.T) {
	dir := os.Getenv(localDirEnv)
	if dir == "" {
		t.Skipf("hack/local-cluster.sh up --kubernetes runs this with %s set; it holds a cluster until down", localDirEnv)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)
	nodes := framework.EnvInt(t, localNodesEnv, 2)
	build := os.Getenv(localBuildEnv)
	if build == "" {
		build = framework.CnishimContainerd
	}
	c := framework.StartCluster(t, env, build, nodes)
	var b strings.Builder
	fmt.Fprintf(&b, "KUBECONFIG=%s\nCLUSTER_DIR=%s\nBRIDGE=%s\nBUILD=%s\nPID=%d\n", c.Kubeconfig, c.Dir, c.Bridge, build, os.Getpid())
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "NODE%d_NETNS=%s\nNODE%d_IP=%s\nNODE%d_DIR=%s\nNODE%d_CGROUP=%s\n", n.Index, n.Netns, n.Index, n.IP,
			n.Index, n.Containerd.Dir, n.Index, n.Containerd.CgroupParent)
	}
	framework.WriteFileAtomic(t, dir, "cluster.env", b.String())
	t.Logf("cluster up: %d nodes on %s containerd; kubectl: nsenter --net=%s %s --kubeconfig %s get nodes",
		nodes, build, c.Nodes[0].Netns, filepath.Join(env.Kubernetes, "bin", "kubectl"), c.Kubeconfig)
	sig := <-stop
	t.Logf("%v: taking the cluster down", sig)
}

// readEnvFile reads a KEY=VALUE file.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

// TestLocalClusterUpDown runs hack/local-cluster.sh up --kubernetes and down as an operator
// would, and checks that the cluster served kubectl and that down left nothing: no process of
// it, no network namespace, bridge, mount, cgroup or dir.
func TestLocalClusterUpDown(t *testing.T) {
	work := filepath.Join(t.TempDir(), "cluster")
	script := filepath.Join(env.Repo, "hack", "local-cluster.sh")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("local-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	down := func() { run("down", "--work-dir", work) }
	run("up", "--kubernetes", "--nodes", "2", "--work-dir", work)
	e := readEnvFile(t, filepath.Join(work, "cluster.env"))
	downed := false
	t.Cleanup(func() {
		if !downed {
			down()
		}
	})
	out, err := exec.Command("nsenter", "--net="+e["NODE0_NETNS"], "--", filepath.Join(env.Kubernetes, "bin", "kubectl"),
		"--kubeconfig", e["KUBECONFIG"], "get", "nodes", "--no-headers").CombinedOutput()
	if err != nil || strings.Count(string(out), " Ready ") != 2 {
		t.Errorf("kubectl get nodes: %v\n%s", err, out)
	}
	down()
	downed = true

	pid, _ := strconv.Atoi(e["PID"])
	if pid == 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("the cluster's process %q is still running after down", e["PID"])
	}
	gone := []string{e["CLUSTER_DIR"], work}
	for i := range 2 {
		gone = append(gone, e[fmt.Sprintf("NODE%d_NETNS", i)], e[fmt.Sprintf("NODE%d_DIR", i)])
		for _, h := range []string{"memory", "cpu", "pids"} {
			gone = append(gone, filepath.Join("/sys/fs/cgroup", h, e[fmt.Sprintf("NODE%d_CGROUP", i)]))
		}
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after down", p)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + e["BRIDGE"]); err == nil {
		t.Errorf("bridge %s is left after down", e["BRIDGE"])
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, p := range gone {
		if strings.Contains(string(mounts), " "+p) {
			t.Errorf("a mount under %s is left after down", p)
		}
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, _ := os.ReadFile(f)
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		for _, d := range []string{e["CLUSTER_DIR"], e["NODE0_DIR"], e["NODE1_DIR"]} {
			if d != "" && strings.Contains(cmdline, d) {
				t.Errorf("a process of the cluster is left after down: %s: %s", filepath.Dir(f), cmdline)
			}
		}
	}
}
