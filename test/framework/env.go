//go:build linux

package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/internal/testing/roottest"
)

// Env holds the prerequisites of the root tests.
type Env struct {
	Repo    string // the repository root
	CNIBin  string // the real CNI plugins: $CNISHIM_TEST_CNI_BIN, default <repo>/_output/cni/bin
	Crictl  string // $CNISHIM_TEST_CRICTL, default <repo>/_output/bin/crictl ("" unless Needs.Crictl)
	Critest string // $CNISHIM_TEST_CRITEST, default <repo>/_output/bin/critest (not checked)
	Cnishim string // $CNISHIM_TEST_CNISHIM, or a binary built with -race ("" unless Needs.Cnishim)
	// Containerd is what hack/install-containerd.sh built: $CNISHIM_TEST_CONTAINERD, default
	// <repo>/_output/containerd ("" unless Needs.Containerd).
	Containerd string
	// Kubelet is the kubelet hack/install-kubernetes.sh built: $CNISHIM_TEST_KUBELET, default
	// <repo>/_output/kubernetes/bin/kubelet ("" unless Needs.Kubelet).
	Kubelet string
	// Kubernetes is the dir of what make deps-k8s built: $CNISHIM_TEST_KUBERNETES, default
	// <repo>/_output/kubernetes, holding bin/ (the control plane, kube-proxy, kubectl, etcd,
	// e2e.test) and images/ ("" unless Needs.Kubernetes).
	Kubernetes string
}

// Needs says which prerequisites a test package needs.
type Needs struct {
	Plugins []string // real CNI plugins that must be in Env.CNIBin
	Tools   []string // commands that must be on PATH (iptables-save, cp)
	Crictl  bool     // crictl must exist
	Cnishim bool     // the cnishim binary must exist, or is built
	// Containerd: both containerd builds, runc and the test images must exist.
	Containerd bool
	// Kubelet: the kubelet must exist.
	Kubelet bool
	// Kubernetes: the rest of a cluster (clusterBinaries and the images) must exist.
	Kubernetes bool
	// Before runs after the prerequisites are found and before the tests, e.g. to build a
	// test plugin; its cleanup runs after the tests.
	Before func() (cleanup func(), err error)
	// AfterPass runs when every test passed; an error fails the package, e.g. something the
	// whole suite left behind.
	AfterPass func() error
	// OnFailure runs when a test or AfterPass failed, before Before's cleanup, e.g. to print
	// the logs of servers the cleanup is about to remove.
	OnFailure func()
}

var mainEnv *Env

// MainEnv returns what Main found. It panics if Main did not run.
func MainEnv() *Env {
	if mainEnv == nil {
		panic("framework.MainEnv: framework.Main did not run in TestMain")
	}
	return mainEnv
}

// Main is a TestMain whose every test needs root and the prerequisites: it finds them (see
// roottest.RequireMain for what happens without root), runs the tests and exits. pkg names the
// package in messages.
func Main(m *testing.M, pkg string, n Needs) {
	code, err := setUp(m, pkg, n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", pkg, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M, pkg string, n Needs) (int, error) {
	if err := roottest.RequireMain(pkg); err != nil {
		return 0, err
	}
	e, cleanup, err := find(n)
	defer cleanup()
	if err != nil {
		return 0, err
	}
	mainEnv = e
	if n.Before != nil {
		done, err := n.Before()
		if err != nil {
			return 0, err
		}
		if done != nil {
			defer done()
		}
	}
	code := m.Run()
	if code == 0 && n.AfterPass != nil {
		if err := n.AfterPass(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", pkg, err)
			code = 1
		}
	}
	if code != 0 && n.OnFailure != nil {
		n.OnFailure()
	}
	return code, nil
}

// RequireEnv finds the prerequisites for one test that needs root: it stops the test (see
// roottest) when it is not root or one is missing. Use it in a package without a TestMain; a
// cnishim binary it builds is removed at the test's cleanup.
func RequireEnv(t *testing.T, n Needs) *Env {
	t.Helper()
	roottest.Require(t)
	e, cleanup, err := find(n)
	t.Cleanup(cleanup)
	if err != nil {
		roottest.Missing(t, "%v", err)
	}
	return e
}

// find finds the prerequisites n names; cleanup removes what it built.
func find(n Needs) (e *Env, cleanup func(), err error) {
	cleanup = func() {}
	_, file, _, _ := runtime.Caller(0)
	e = &Env{Repo: filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))}
	e.CNIBin = envOr("CNISHIM_TEST_CNI_BIN", filepath.Join(e.Repo, "_output", "cni", "bin"))
	e.Critest = envOr("CNISHIM_TEST_CRITEST", filepath.Join(e.Repo, "_output", "bin", "critest"))
	for _, p := range n.Plugins {
		if _, err := os.Stat(filepath.Join(e.CNIBin, p)); err != nil {
			return nil, cleanup, fmt.Errorf("CNI plugin %q missing in %s (run hack/install-cni-plugins.sh or make deps): %w", p, e.CNIBin, err)
		}
	}
	for _, tool := range n.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, cleanup, fmt.Errorf("%s missing (make deps installs iptables): %w", tool, err)
		}
	}
	if n.Crictl {
		e.Crictl = envOr("CNISHIM_TEST_CRICTL", filepath.Join(e.Repo, "_output", "bin", "crictl"))
		if _, err := os.Stat(e.Crictl); err != nil {
			return nil, cleanup, fmt.Errorf("crictl missing (run hack/install-crictl.sh or make deps): %w", err)
		}
	}
	if n.Cnishim {
		e.Cnishim = os.Getenv("CNISHIM_TEST_CNISHIM")
		if e.Cnishim == "" {
			dir, err := os.MkdirTemp("", "cnishim-test-bin-")
			if err != nil {
				return nil, cleanup, err
			}
			cleanup = func() { _ = os.RemoveAll(dir) }
			e.Cnishim = filepath.Join(dir, "cnishim")
			build := exec.Command("go", "build", "-race", "-o", e.Cnishim, "./cmd/cnishim")
			build.Dir = e.Repo
			if out, err := build.CombinedOutput(); err != nil {
				return nil, cleanup, fmt.Errorf("go build ./cmd/cnishim: %w\n%s", err, out)
			}
		}
		if _, err := os.Stat(e.Cnishim); err != nil {
			return nil, cleanup, fmt.Errorf("cnishim binary (make build, or unset CNISHIM_TEST_CNISHIM to build it here): %w", err)
		}
	}
	if n.Containerd {
		e.Containerd = envOr("CNISHIM_TEST_CONTAINERD", filepath.Join(e.Repo, "_output", "containerd"))
		for _, f := range []string{"stock/bin/containerd", "cnishim/bin/containerd", "bin/runc", "images/list"} {
			if _, err := os.Stat(filepath.Join(e.Containerd, f)); err != nil {
				return nil, cleanup, fmt.Errorf("containerd build missing (run hack/install-containerd.sh or make deps-containerd): %w", err)
			}
		}
	}
	if n.Kubelet {
		e.Kubelet = envOr("CNISHIM_TEST_KUBELET", filepath.Join(e.Repo, "_output", "kubernetes", "bin", "kubelet"))
		if _, err := os.Stat(e.Kubelet); err != nil {
			return nil, cleanup, fmt.Errorf("kubelet missing (run hack/install-kubernetes.sh or make deps-kubelet): %w", err)
		}
	}
	if n.Kubernetes {
		e.Kubernetes = envOr("CNISHIM_TEST_KUBERNETES", filepath.Join(e.Repo, "_output", "kubernetes"))
		for _, f := range append(slices.Clone(clusterBinaries), "../images/list") {
			if _, err := os.Stat(filepath.Join(e.Kubernetes, "bin", f)); err != nil {
				return nil, cleanup, fmt.Errorf("the cluster's binaries or images missing (make deps-k8s): %w", err)
			}
		}
	}
	return e, cleanup, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// EnvInt reads a positive integer knob from the environment variable name (def when unset),
// failing the test on a malformed value.
func EnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// EnvInts reads a knob of positive integers, separated by spaces, from the environment
// variable name (def when unset), failing the test on a malformed value.
func EnvInts(t testing.TB, name, def string) []int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []int
	for _, f := range strings.Fields(v) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: %q is not a positive integer", name, v, f)
		}
		out = append(out, n)
	}
	return out
}
