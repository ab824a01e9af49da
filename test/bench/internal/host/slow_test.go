//go:build linux

package host_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// TestSlowNetworkLeaksAndSweep sets pods up through the slow IPAM with cnishim, one with the
// slow network alone and one with it as an extra network beside the benchmark network, and
// does not tear them down: the leak check must see what each network holds (host-local
// reservations, veths on each bridge, cache files, rules), and the sweep must release it all.
func TestSlowNetworkLeaksAndSweep(t *testing.T) {
	env := newEnv(t, host.Names{Network: "cnibtest-slowdef", Bridge: "cnibtslowd0", Subnet: "10.192.0.0/16"})
	slow := host.Names{Network: "cnibtest-slow", Bridge: "cnibtslow0", Subnet: "10.191.0.0/16"}
	if err := env.AddSlowNetwork(plugintest.MustBuild(t), slow); err != nil {
		t.Fatal(err)
	}
	pods := []impls.PodSpec{
		{ID: strings.Repeat("4", 64), Name: "slow-a", Namespace: "cnibench", UID: "a"},
		{ID: strings.Repeat("5", 64), Name: "slow-b", Namespace: "cnibench", UID: "b", ExtraNetwork: slow.Network},
	}
	createNetNS(t, env, pods)

	for i, s := range []host.Setup{{IPAMWait: 50 * time.Millisecond}, {IPAMWait: 50 * time.Millisecond, Mixed: true}} {
		cfg, err := env.Config(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		impl, err := impls.New(t.Context(), impls.Cnishim, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := impl.SetUp(t.Context(), &pods[i]); err != nil {
			t.Fatal(err)
		}
		if err := impl.Close(); err != nil {
			t.Fatal(err)
		}
	}

	l, err := env.CheckLeaks(pods)
	if err != nil {
		t.Fatal(err)
	}
	count := func(items []string, prefix string) int {
		n := 0
		for _, s := range items {
			if strings.HasPrefix(s, prefix) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		kind      string
		got, want int
	}{
		{"reservations on the slow network (pod a, pod b's extra network)", count(l.Reservations, slow.Network+"/"), 2},
		{"reservations on the default network (pod b)", count(l.Reservations, env.Network+"/"), 1},
		{"veths on the slow bridge", count(l.Veths, slow.Bridge+":"), 2},
		{"veths on the default bridge", count(l.Veths, env.Bridge+":"), 1},
		{"links in pod netns (eth0 of a; eth0 and net1 of b)", len(l.PodLinks), 3},
		{"cache files (one per attachment)", len(l.CacheFiles), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d; leaks: %s", c.kind, c.got, c.want, l)
		}
	}
	var slowMasq bool
	for _, r := range l.Rules {
		slowMasq = slowMasq || strings.Contains(r, host.ChainName("CNI-", slow.Network, pods[1].ID))
	}
	if !slowMasq {
		t.Errorf("rules: pod b's ipMasq chain on the slow network not found; rules: %v", l.Rules)
	}

	if err := env.Sweep(t.Context(), pods); err != nil {
		t.Fatal(err)
	}
	after, err := env.CheckLeaks(pods)
	if err != nil || !after.Clean() {
		t.Fatalf("after sweep: %v, %v", after, err)
	}
}
