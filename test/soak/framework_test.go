//go:build linux

// Package soak runs cnishim through what a node meets over months, compressed into minutes:
// the runtime killed with SIGKILL in the middle of a storm of pod set-ups, of pod teardowns,
// of its own restart's recovery, or of a CNI GC pass (at its start, or one `cnishim gc` runs
// or asks of it), and restarted, again and again; and the CNI config directory and plugin
// binaries changed under running set-ups and teardowns in every way installers change them.
// Each test counts what it tried, logs one summary line, and fails if anything was lost or
// seen half-done: an IP, a veth, a netns mount, a libcni cache entry or a portmap rule left
// behind; a half-written config used; a pod torn down with a config other than its own;
// readiness lost while a valid config existed.
//
// It is built on test/framework. Prerequisites: root; the plugins of
// hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN (default <repo>/_output/cni/bin);
// iptables-save; crictl in $CNISHIM_TEST_CRICTL (default <repo>/_output/bin/crictl); the
// cnishim binary in $CNISHIM_TEST_CNISHIM, or built by TestMain with -race when that is unset.
// Under make test, make soak and CI (CNISHIM_REQUIRE_ROOT_TESTS=1), and whenever run as root,
// the tests fail without them; a plain go test by a user who is not root skips them
// (internal/testing/roottest).
//
// Knobs, all optional (make soak raises the sizes): CNISHIM_SOAK_SEED repeats a run's random
// choices (each test logs its seed); CNISHIM_SOAK_ROUNDS and CNISHIM_SOAK_PODS size the crash
// test, and the GC kill test after it (three rounds for every ten, an eighth of the pods);
// CNISHIM_SOAK_CHURN_OPS sizes the config churn test.
package soak

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/framework"
)

// requiredPlugins are the real plugins the tests' networks use.
var requiredPlugins = []string{"bridge", "host-local", "portmap"}

// env holds the prerequisites TestMain found.
var env *framework.Env

func TestMain(m *testing.M) {
	framework.Main(m, "test/soak", framework.Needs{
		Plugins: requiredPlugins,
		Tools:   []string{"iptables-save", "cp"},
		Crictl:  true,
		Cnishim: true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			// TestCrashGC slows the plugins' GC with the cnitest plugin.
			if _, err := plugintest.Build(); err != nil {
				return nil, err
			}
			return plugintest.Cleanup, nil
		},
	})
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

// copyPlugins fills dir with copies of the named real plugins. A bin dir of the test's own
// lets it tell its plugin processes from every other (see framework.PluginProcs) and replace binaries
// without touching the shared one.
func copyPlugins(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := copyFile(filepath.Join(env.CNIBin, n), filepath.Join(dir, n), 0o755); err != nil {
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
