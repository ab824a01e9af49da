//go:build linux

// Package cluster_test holds the sig-network style checks of cnishim on a local cluster
// (test/cluster/localcluster): three nodes, each a network namespace with its own `cnishim
// serve`, on kind's network (ptp + host-local + portmap, static routes between nodes), dual
// stack. Each check names the Kubernetes e2e test it mirrors. One cluster serves every check;
// TestMain brings it up, and after the checks finds that nothing of their pods is left on any
// node (check 9) before taking it down.
package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/roottest"
	"github.com/cnishim/cnishim/test/cluster/localcluster"
)

// env holds the prerequisites TestMain found.
var env struct {
	cnishim, cniBin, crictl, netexec string
}

// cl is the cluster every check runs on.
var cl *localcluster.Cluster

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func setUp(m *testing.M) (code int, retErr error) {
	if err := roottest.RequireMain("test/cluster"); err != nil {
		return 0, err
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	env.cniBin = envOr("CNISHIM_TEST_CNI_BIN", filepath.Join(repo, "_output", "cni", "bin"))
	env.crictl = envOr("CNISHIM_TEST_CRICTL", filepath.Join(repo, "_output", "bin", "crictl"))
	for _, p := range []string{filepath.Join(env.cniBin, "ptp"), filepath.Join(env.cniBin, "host-local"), filepath.Join(env.cniBin, "portmap"), env.crictl} {
		if _, err := os.Stat(p); err != nil {
			return 0, fmt.Errorf("prerequisite missing (run make deps): %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "cnishim-cluster-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env.cnishim = os.Getenv("CNISHIM_TEST_CNISHIM")
	if env.cnishim == "" {
		env.cnishim = filepath.Join(dir, "cnishim")
		build := exec.CommandContext(ctx, "go", "build", "-race", "-o", env.cnishim, "./cmd/cnishim")
		build.Dir = repo
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build ./cmd/cnishim: %w\n%s", err, out)
		}
	}
	env.netexec = filepath.Join(dir, "netexec")
	if err := localcluster.BuildNetexec(ctx, env.netexec); err != nil {
		return 0, err
	}
	work := filepath.Join(dir, "cluster")
	cl, err = localcluster.Up(ctx, localcluster.Config{
		Nodes:     3,
		IPFamily:  localcluster.DualStack,
		Network:   "kindnet",
		WorkDir:   work,
		Cnishim:   env.cnishim,
		CNIBinDir: env.cniBin,
		// A prefix of this run alone: other runs and localcluster's tests may have clusters up.
		Prefix: fmt.Sprintf("ck%d", os.Getpid()%100000),
		// A dual-stack set-up mostly waits: ptp's IPAM step waits for IPv6 duplicate address
		// detection (a second or two) on every pod. The default bound of one ADD chain per CPU
		// then makes TestRecoverFromIPLeak's 100 pods take minutes on two CPUs; a bound of 8
		// keeps it short and puts more set-ups in flight at each kill.
		ServeArgs: []string{"-v", "4", "--max-parallel-setups", "8"},
	})
	if err != nil {
		return 0, fmt.Errorf("bring the cluster up: %w", err)
	}
	fmt.Fprintf(os.Stderr, "test/cluster: cluster up in %s (if this run is killed: hack/local-cluster.sh down --work-dir %s)\n", work, work)
	defer func() {
		if code != 0 {
			dumpLogs()
		}
		if err := cl.Down(context.Background()); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("take the cluster down: %w", err))
		}
	}()
	code = m.Run()
	// Check 9: whatever ran, every check removed its pods, and nothing of them is left.
	lctx, lcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer lcancel()
	var leaks []string
	for _, n := range cl.Nodes {
		leaks = append(leaks, nodeLeaks(lctx, n)...)
	}
	if len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "test/cluster: left behind after every pod was removed:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	return code, nil
}

// dumpLogs prints the end of every node's server log.
func dumpLogs() {
	for _, n := range cl.Nodes {
		b, _ := os.ReadFile(n.Log)
		if len(b) > 64<<10 {
			b = b[len(b)-64<<10:]
		}
		fmt.Fprintf(os.Stderr, "=== %s serve.log (end):\n%s\n", n.Name, b)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
