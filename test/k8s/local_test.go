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
	localDirEnv   = "CNISHIM_K8S_LOCAL_DIR"   // the work dir: cluster.env and cluster.down go there
	localNodesEnv = "CNISHIM_K8S_LOCAL_NODES" // the number of nodes (default 2)
	localBuildEnv = "CNISHIM_K8S_LOCAL_BUILD" // the containerd build (default cnishim)
)

// TestLocalKubernetesCluster is the cluster of hack/local-cluster.sh up --kubernetes, which runs
// it alone: it brings a cluster up, writes <work dir>/cluster.env (the kubeconfig, the nodes'
// namespaces, what the cluster made on the host) and holds the cluster until SIGTERM or SIGINT
// (local-cluster.sh down sends one); its cleanup then takes everything down, as every test's
// does, and last writes <work dir>/cluster.down: "ok", or "failed" when the test or its cleanup
// failed. Run any other way, it skips: it is a cluster's lifetime, not a check.
func TestLocalKubernetesCluster(t *testing.T) {
	dir := os.Getenv(localDirEnv)
	if dir == "" {
		t.Skipf("hack/local-cluster.sh up --kubernetes runs this with %s set; it holds a cluster until down", localDirEnv)
	}
	// Caught until the very end: a second signal during the cleanup must not cut it short.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	t.Cleanup(func() {
		signal.Stop(stop)
		state := "ok\n"
		if t.Failed() {
			state = "failed\n"
		}
		framework.WriteFileAtomic(t, dir, "cluster.down", state)
	})
	nodes := framework.EnvInt(t, localNodesEnv, 2)
	build := os.Getenv(localBuildEnv)
	if build == "" {
		build = framework.CnishimContainerd
	}
	c := framework.StartCluster(t, env, build, nodes)
	var b strings.Builder
	fmt.Fprintf(&b, "KUBECONFIG=%s\n%s\nCLUSTER_DIR=%s\nSWITCH_NETNS=/run/netns/%s\nBUILD=%s\nPID=%d\n",
		c.Kubeconfig, strings.Join(c.KubectlEnv(), "\n"), c.Dir, c.Switch, build, os.Getpid())
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "NODE%[1]d_NETNS=%[2]s\nNODE%[1]d_IP=%[3]s\nNODE%[1]d_DIR=%[4]s\nNODE%[1]d_CGROUP=%[5]s\nNODE%[1]d_HOLDER=%[6]d\n",
			n.Index, n.Netns, n.IP, n.Containerd.Dir, n.Containerd.CgroupParent, n.Containerd.HolderPID())
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
// would, and checks that the cluster served kubectl and that down left nothing it made: not
// the process holding it, a node's mount namespace holder (and with it the namespace's mounts),
// a network namespace, a cgroup or a dir, nor a process started from a node's dirs.
func TestLocalClusterUpDown(t *testing.T) {
	work := filepath.Join(t.TempDir(), "cluster")
	script := filepath.Join(env.Repo, "hack", "local-cluster.sh")
	run := func(args ...string) error {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("local-cluster.sh %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	downed := false
	t.Cleanup(func() {
		// up failed half-way, or a check did: down what is up.
		if _, err := os.Stat(filepath.Join(work, "k8s.pid")); err == nil && !downed {
			if err := run("down", "--work-dir", work); err != nil {
				t.Error(err)
			}
		}
	})
	if err := run("up", "--kubernetes", "--nodes", "2", "--work-dir", work); err != nil {
		t.Fatal(err)
	}
	e := readEnvFile(t, filepath.Join(work, "cluster.env"))
	kubectl := exec.Command("nsenter", "--net="+e["NODE0_NETNS"], "--", filepath.Join(env.Kubernetes, "bin", "kubectl"),
		"--kubeconfig", e["KUBECONFIG"], "get", "nodes", "--no-headers")
	kubectl.Env = append(os.Environ(), "KUBECACHEDIR="+e["KUBECACHEDIR"])
	out, err := kubectl.CombinedOutput()
	if err != nil || strings.Count(string(out), " Ready ") != 2 {
		t.Errorf("kubectl get nodes: %v\n%s", err, out)
	}
	downed = true
	if err := run("down", "--work-dir", work); err != nil {
		t.Fatal(err)
	}

	for _, key := range []string{"PID", "NODE0_HOLDER", "NODE1_HOLDER"} {
		if pid, _ := strconv.Atoi(e[key]); pid == 0 || syscall.Kill(pid, 0) == nil {
			t.Errorf("%s %q is still running after down", key, e[key])
		}
	}
	gone := []string{e["CLUSTER_DIR"], work, e["SWITCH_NETNS"]}
	for i := range 2 {
		gone = append(gone, e[fmt.Sprintf("NODE%d_NETNS", i)], e[fmt.Sprintf("NODE%d_DIR", i)])
		for _, h := range []string{"memory", "cpu", "pids"} {
			gone = append(gone, filepath.Join("/sys/fs/cgroup", h, e[fmt.Sprintf("NODE%d_CGROUP", i)]))
		}
	}
	for _, p := range gone {
		if p == "" {
			t.Errorf("cluster.env lacks a path to check: %v", e)
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after down", p)
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
