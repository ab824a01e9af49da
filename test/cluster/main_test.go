//go:build linux

// Package cluster_test holds the sig-network style checks of cnishim on a local cluster
// (test/cluster/localcluster): three nodes, each a network namespace with its own `cnishim
// serve`, on kind's network (ptp + host-local + portmap, static routes between nodes), or on
// flannel's (vxlan, with etcd) when CLUSTER_NETWORK=flannel, dual stack. Each check names the
// Kubernetes e2e test it mirrors. One cluster serves every check (TestClusterScale, the scale
// soak, brings up its own); TestMain brings it up, and after the checks finds that nothing of
// their pods is left on any node (check 9) before taking it down.
package cluster_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
	"github.com/cnishim/cnishim/test/framework"
)

// env holds the prerequisites TestMain found.
var env struct {
	cnishim, cniBin, crictl, netexec string
	// network is the cluster's network: $CLUSTER_NETWORK, default kindnet.
	network string
	// flannelBin holds flanneld, etcd and the flannel plugin: $CNISHIM_TEST_FLANNEL_BIN,
	// default <repo>/_output/flannel/bin (flannel only).
	flannelBin string
}

// cl is the cluster every check runs on.
var cl *localcluster.Cluster

func TestMain(m *testing.M) {
	env.network = cmp.Or(os.Getenv("CLUSTER_NETWORK"), "kindnet")
	plugins := []string{"ptp", "host-local", "portmap", "loopback"}
	if env.network == "flannel" {
		plugins = []string{"bridge", "host-local", "portmap", "loopback"}
	}
	framework.Main(m, "test/cluster", framework.Needs{
		Plugins:   plugins,
		Crictl:    true,
		Cnishim:   true,
		Before:    bringUp,
		AfterPass: checkNothingLeft,
		OnFailure: dumpLogs,
	})
}

// bringUp builds netexec and brings up the cluster the checks share; its cleanup takes it down.
func bringUp() (func(), error) {
	e := framework.MainEnv()
	env.cnishim, env.cniBin, env.crictl = e.Cnishim, e.CNIBin, e.Crictl
	if env.network == "flannel" {
		env.flannelBin = cmp.Or(os.Getenv("CNISHIM_TEST_FLANNEL_BIN"), filepath.Join(e.Repo, "_output", "flannel", "bin"))
		for _, b := range []string{"flanneld", "etcd", "etcdctl", "flannel"} {
			if _, err := os.Stat(filepath.Join(env.flannelBin, b)); err != nil {
				return nil, fmt.Errorf("CLUSTER_NETWORK=flannel: %s missing (run hack/install-flannel.sh, or CLUSTER_NETWORK=flannel make e2e-cluster): %w", b, err)
			}
		}
	}
	dir, err := os.MkdirTemp("", "cnishim-cluster-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env.netexec = filepath.Join(dir, "netexec")
	if err := localcluster.BuildNetexec(ctx, env.netexec); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	work := filepath.Join(dir, "cluster")
	cl, err = localcluster.Up(ctx, localcluster.Config{
		Nodes:    3,
		IPFamily: localcluster.DualStack,
		Network:  env.network,
		WorkDir:  work,
		// Only the flannel network reads it.
		FlannelBinDir: env.flannelBin,
		Cnishim:       env.cnishim,
		CNIBinDir:     env.cniBin,
		// A prefix of this run alone: other runs and localcluster's tests may have clusters up.
		Prefix: fmt.Sprintf("ck%d", os.Getpid()%100000),
		// A dual-stack set-up mostly waits: ptp's IPAM step waits for IPv6 duplicate address
		// detection (a second or two) on every pod. The default bound of one ADD chain per CPU
		// then makes TestRecoverFromIPLeak's 100 pods take minutes on two CPUs; a bound of 8
		// keeps it short and puts more set-ups in flight at each kill.
		ServeArgs: []string{"-v", "4", "--max-parallel-setups", "8"},
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("bring the cluster up: %w", err)
	}
	fmt.Fprintf(os.Stderr, "test/cluster: cluster up in %s (if this run is killed: hack/local-cluster.sh down --work-dir %s)\n", work, work)
	return func() {
		if err := cl.Down(context.Background()); err != nil {
			fmt.Fprintf(os.Stderr, "test/cluster: take the cluster down: %v\n", err)
		}
		_ = os.RemoveAll(dir)
	}, nil
}

// checkNothingLeft is check 9: every check removed its pods, and nothing of them is left on
// any node.
func checkNothingLeft() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var leaks []string
	for _, n := range cl.Nodes {
		leaks = append(leaks, nodeLeaks(ctx, n)...)
	}
	if len(leaks) > 0 {
		return fmt.Errorf("left behind after every pod was removed:\n  %s", strings.Join(leaks, "\n  "))
	}
	return nil
}

// dumpLogs prints the end of every node's server log.
func dumpLogs() {
	if cl == nil {
		return
	}
	for _, n := range cl.Nodes {
		b, _ := os.ReadFile(n.Log)
		if len(b) > 64<<10 {
			b = b[len(b)-64<<10:]
		}
		fmt.Fprintf(os.Stderr, "=== %s serve.log (end):\n%s\n", n.Name, b)
		if env.network == "flannel" {
			b, _ := os.ReadFile(filepath.Join(n.Dir, "flanneld.log"))
			if len(b) > 16<<10 {
				b = b[len(b)-16<<10:]
			}
			fmt.Fprintf(os.Stderr, "=== %s flanneld.log (end):\n%s\n", n.Name, b)
		}
	}
}
