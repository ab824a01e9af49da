//go:build linux

package host_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/test/bench/internal/benchtest"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// TestCheckLeaksSeesWhatPodsLeave sets pods up and does not tear them down: the leak check
// must see every kind of leftover, and the sweep must release all of it.
func TestCheckLeaksSeesWhatPodsLeave(t *testing.T) {
	benchtest.RequireRoot(t)
	env := newEnv(t, host.Names{Network: "cnibtest-leaks", Bridge: "cnibtleaks0", Subnet: "10.198.0.0/16"})
	pods := []impls.PodSpec{
		{ID: strings.Repeat("1", 64), Name: "leak-a", Namespace: "cnibench", UID: "a"},
		{ID: strings.Repeat("2", 64), Name: "leak-b", Namespace: "cnibench", UID: "b", HostPort: 30998, HostIP: host.HostIP},
		// Never set up: it gets only the rules a plugin killed half-way through ADD would
		// leave, which no DEL removes.
		{ID: strings.Repeat("3", 64), Name: "leak-c", Namespace: "cnibench", UID: "c"},
	}
	createNetNS(t, env, pods)
	clean, err := env.CheckLeaks(pods)
	if err != nil || !clean.Clean() {
		t.Fatalf("before any set-up: %v, %v", clean, err)
	}

	// One pod through raw libcni, one through go-cni (with a loopback attachment), both
	// with this environment's cache.
	for i, name := range []string{impls.Floor, impls.GoCNI} {
		impl, err := impls.New(t.Context(), name, env.Impl(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := impl.SetUp(t.Context(), &pods[i]); err != nil {
			t.Fatal(err)
		}
	}

	stray := host.ChainName("CNI-", env.Network, pods[2].ID)
	comment := `name: "` + env.Network + `" id: "` + pods[2].ID + `"`
	for _, args := range [][]string{
		{"-N", stray},
		{"-A", stray, "-d", "10.198.0.0/16", "-m", "comment", "--comment", comment, "-j", "ACCEPT"},
		{"-A", "POSTROUTING", "-s", "10.198.255.254/32", "-m", "comment", "--comment", comment, "-j", stray},
	} {
		if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}

	l, err := env.CheckLeaks(pods)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind string
		got  []string
		want int
	}{
		{"host-local reservations", l.Reservations, 2},
		{"veths on the bridge", l.Veths, 2},
		{"links in pod netns", l.PodLinks, 2},
		{"cache files (pod a's, pod b's and its loopback's)", l.CacheFiles, 3},
	} {
		if len(c.got) != c.want {
			t.Errorf("%s: got %d %v, want %d", c.kind, len(c.got), c.got, c.want)
		}
	}
	// The implementations are compared on one filesystem: go-cni's cache too is the run's.
	for _, f := range l.CacheFiles {
		if !strings.HasPrefix(f, env.CacheDir+"/") {
			t.Errorf("cache file %s is outside the run's cache dir %s", f, env.CacheDir)
		}
	}
	// ipMasq rules for both pods, and portmap's chain and rules for pod b.
	var masqA, dnatB, strayC bool
	for _, r := range l.Rules {
		masqA = masqA || strings.Contains(r, pods[0].ID)
		dnatB = dnatB || strings.Contains(r, "CNI-DN-") && strings.Contains(r, "30998")
		strayC = strayC || strings.Contains(r, ":"+stray)
	}
	if !masqA || !dnatB || !strayC {
		t.Errorf("rules: masquerade of pod a found %v, DNAT of pod b's hostPort found %v, pod c's stray chain found %v; rules: %v",
			masqA, dnatB, strayC, l.Rules)
	}
	if l.Clean() {
		t.Error("Clean() = true with pods set up")
	}

	if err := env.Sweep(t.Context(), pods); err != nil {
		t.Fatal(err)
	}
	after, err := env.CheckLeaks(pods)
	if err != nil || !after.Clean() {
		t.Fatalf("after sweep: %v, %v", after, err)
	}
}

// newEnv is a benchmark environment with the real plugins and the given names, closed when
// the test ends.
func newEnv(t *testing.T, names host.Names) *host.Env {
	t.Helper()
	benchtest.RequireRoot(t)
	env, err := host.NewEnv(benchtest.CNIBinDir(t), "1.0.0", names)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Error(err)
		}
	})
	return env
}

// createNetNS creates the pods' namespaces; when the test ends, whatever the pods hold is
// swept and the namespaces removed.
func createNetNS(t *testing.T, env *host.Env, pods []impls.PodSpec) {
	t.Helper()
	if err := env.CreateNetNS(pods); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Sweep(t.Context(), pods)
		if err := env.RemoveNetNS(pods); err != nil {
			t.Error(err)
		}
	})
}
