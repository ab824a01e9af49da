//go:build linux

// Package soak runs cnishim through what a node meets over months, compressed into minutes:
// the runtime killed with SIGKILL in the middle of a storm of pod set-ups, of pod teardowns,
// or of its own restart's recovery, and restarted, again and again; and the CNI config
// directory and plugin binaries changed under running set-ups and teardowns in every way
// installers change them. Each test counts what it tried, logs one
// summary line, and fails if anything was lost or seen half-done: an IP, a veth, a netns mount,
// a libcni cache entry or a portmap rule left behind; a half-written config used; a pod torn
// down with a config other than its own; readiness lost while a valid config existed.
//
// Prerequisites, all required (the tests fail, never skip, without them): root; the plugins
// of hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN (default <repo>/_output/cni/bin);
// crictl in $CNISHIM_TEST_CRICTL (default <repo>/_output/bin/crictl); the cnishim binary in
// $CNISHIM_TEST_CNISHIM, or built by TestMain with -race when that is unset.
//
// Knobs, all optional (make soak raises the sizes): CNISHIM_SOAK_SEED repeats a run's random
// choices (each test logs its seed); CNISHIM_SOAK_ROUNDS and CNISHIM_SOAK_PODS size the crash
// test; CNISHIM_SOAK_CHURN_OPS sizes the config churn test.
package soak

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/roottest"
)

// requiredPlugins are the real plugins the tests' networks use.
var requiredPlugins = []string{"bridge", "host-local", "portmap"}

// env holds the prerequisites TestMain found.
var env struct {
	repo    string
	cniBin  string
	crictl  string
	cnishim string
}

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/soak: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setUp(m *testing.M) (int, error) {
	if err := roottest.RequireMain("test/soak"); err != nil {
		return 0, err
	}
	_, file, _, _ := runtime.Caller(0)
	env.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	env.cniBin = envOr("CNISHIM_TEST_CNI_BIN", filepath.Join(env.repo, "_output", "cni", "bin"))
	for _, p := range requiredPlugins {
		if _, err := os.Stat(filepath.Join(env.cniBin, p)); err != nil {
			return 0, fmt.Errorf("CNI plugin %q missing in %s (run hack/install-cni-plugins.sh or make deps): %v", p, env.cniBin, err)
		}
	}
	for _, tool := range []string{"iptables-save", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, fmt.Errorf("%s missing (make deps installs iptables): %v", tool, err)
		}
	}
	env.crictl = envOr("CNISHIM_TEST_CRICTL", filepath.Join(env.repo, "_output", "bin", "crictl"))
	if _, err := os.Stat(env.crictl); err != nil {
		return 0, fmt.Errorf("crictl missing (run hack/install-crictl.sh or make deps): %v", err)
	}
	env.cnishim = os.Getenv("CNISHIM_TEST_CNISHIM")
	if env.cnishim == "" {
		dir, err := os.MkdirTemp("", "cnishim-soak-bin-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		env.cnishim = filepath.Join(dir, "cnishim")
		build := exec.Command("go", "build", "-race", "-o", env.cnishim, "./cmd/cnishim")
		build.Dir = env.repo
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build ./cmd/cnishim: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(env.cnishim); err != nil {
		return 0, fmt.Errorf("cnishim binary (make build, or unset CNISHIM_TEST_CNISHIM to build it here): %v", err)
	}
	return m.Run(), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envInt reads a positive integer knob, failing the test on a malformed value.
func envInt(t *testing.T, name string, def int) int {
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

// runSeed returns the seed of the test's random choices, from CNISHIM_SOAK_SEED or the clock,
// and logs it so that a failing run can be repeated.
func runSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CNISHIM_SOAK_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CNISHIM_SOAK_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("seed %d (CNISHIM_SOAK_SEED=%d repeats this run's choices)", seed, seed)
	return seed
}

// slot returns a number in [0, n) that tells this test process from others running the same
// tests on the machine at the same time; bridge names, subnets and host ports derive from it.
func slot(n int) int { return os.Getpid() % n }

// copyPlugins fills dir with copies of the named real plugins. A bin dir of the test's own
// lets it tell its plugin processes from every other (see pluginProcs) and replace binaries
// without touching the shared one.
func copyPlugins(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := copyFile(filepath.Join(env.cniBin, n), filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// pluginProcs lists the processes ("pid exe") running a binary from binDir, including one
// whose binary was replaced since it started ("... (deleted)").
func pluginProcs(binDir string) ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		if strings.HasPrefix(exe, binDir+"/") {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out, nil
}

// waitPluginProcs waits until no process runs a binary from binDir, and returns how many did at
// the first look. It gives up when ctx ends.
func waitPluginProcs(ctx context.Context, binDir string) (int, error) {
	first := -1
	for {
		procs, err := pluginProcs(binDir)
		if err != nil {
			return 0, err
		}
		if first < 0 {
			first = len(procs)
		}
		if len(procs) == 0 {
			return first, nil
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return first, fmt.Errorf("plugin processes still running: %v: %w", procs, err)
		}
	}
}

// pause waits for d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkNoBridge fails the test if a bridge of that name exists: another run of these tests is
// going on, or one left it behind.
func checkNoBridge(t *testing.T, name string) {
	t.Helper()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("bridge %s already exists: another run of these tests is going on, or one left it behind", name)
	}
}

// deleteBridge removes a bridge if it exists.
func deleteBridge(t *testing.T, name string) {
	t.Helper()
	if l, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("delete bridge %s: %v", name, err)
		}
	}
}
