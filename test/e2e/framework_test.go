//go:build linux

// Package e2e drives `cnishim serve` with the real crictl over a real unix socket, with the real
// CNI plugins in real network namespaces. Every test runs its own server on its own socket,
// state, conf, cache and host-local dirs, bridge and subnet, and fails if anything its pods had
// (IPs, libcni cache entries, netns mounts, veths, portmap rules) is left after it. It is built
// on test/framework.
//
// Prerequisites: root; the plugins of hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN
// (default <repo>/_output/cni/bin); crictl in $CNISHIM_TEST_CRICTL (default
// <repo>/_output/bin/crictl, from hack/install-crictl.sh); critest in $CNISHIM_TEST_CRITEST
// (default <repo>/_output/bin/critest). The cnishim binary is $CNISHIM_TEST_CNISHIM, or built
// by TestMain with -race when that is unset. Under make test, make e2e and CI
// (CNISHIM_REQUIRE_ROOT_TESTS=1), and whenever run as root, the tests fail without them; a
// plain go test by a user who is not root skips them (internal/testing/roottest).
package e2e

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/test/framework"
)

// env holds the prerequisites TestMain found.
var env *framework.Env

// suite collects what every test created, for the check after the suite.
var suite struct {
	mu      sync.Mutex
	needles []string // sandbox IDs and "dport N" of host ports
	bridges []string
}

func TestMain(m *testing.M) {
	framework.Main(m, "test/e2e", framework.Needs{
		Plugins: []string{"bridge", "host-local", "portmap"},
		Crictl:  true,
		Cnishim: true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			return nil, nil
		},
		AfterPass: func() error {
			if leaks := suiteLeaks(); len(leaks) > 0 {
				return errors.New("left behind after the suite:\n  " + strings.Join(leaks, "\n  "))
			}
			return nil
		},
	})
}

// suiteLeaks looks, after every test is done, for rules mentioning any sandbox or host port of
// the suite and for any of its bridges.
func suiteLeaks() []string {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	st := leakcheck.Take(leakcheck.Scope{RuleNeedles: suite.needles})
	var out []string
	for _, r := range st.Rules {
		out = append(out, "rule: "+r)
	}
	for _, p := range st.Problems {
		out = append(out, "could not check: "+p)
	}
	for _, b := range suite.bridges {
		if _, err := netlink.LinkByName(b); err == nil {
			out = append(out, "bridge: "+b)
		}
	}
	return out
}

// testNet is a test's own network.
type testNet = framework.Net

// netSlots tell the tests' networks apart: 10.99.x.0/24 exists only on these bridges.
var netSlots = framework.Slots{Procs: 24, Per: 10}

func newTestNet(t *testing.T, name string) *testNet {
	t.Helper()
	k := netSlots.Next()
	n := framework.NewNet(t, name, fmt.Sprintf("cnishim-c%d", k), fmt.Sprintf("10.99.%d.0/24", k%250+1))
	suite.mu.Lock()
	suite.bridges = append(suite.bridges, n.Bridge)
	suite.mu.Unlock()
	return n
}

// server is one `cnishim serve` process and the crictl set up to talk to it.
type server struct {
	*framework.Server
}

// startServer starts cnishim serve on fresh dirs with an empty conf dir and any extra flags,
// registers its stop and the leak check at cleanup, and waits until it answers.
func startServer(t *testing.T, n *testNet, extraFlags ...string) *server {
	t.Helper()
	return startServerWith(t, n, serverDirs{}, extraFlags...)
}

// serverDirs overrides where startServerWith puts a server's dirs; a zero field keeps the fresh
// default under the server's temp dir.
type serverDirs struct {
	cacheDir string // --cni-cache-dir, e.g. one another runtime uses too
	stateDir string // --state-dir as passed; a relative one is taken from workDir
	workDir  string // the server's working directory (default: the test's)
}

// startServerWith is startServer with some dirs given.
func startServerWith(t *testing.T, n *testNet, dirs serverDirs, extraFlags ...string) *server {
	t.Helper()
	s := &server{}
	var before leakcheck.State
	s.Server = framework.NewServer(t, env, framework.Options{
		Net:       n,
		CacheDir:  dirs.cacheDir,
		StateDir:  dirs.stateDir,
		WorkDir:   dirs.workDir,
		Flags:     extraFlags,
		AfterStop: func() { s.checkLeaks(before) },
	})
	before = leakcheck.Take(s.scope())
	s.Start()
	return s
}

// checkLeaks fails the test for whatever the test's pods had, then for veths on the bridge.
func (s *server) checkLeaks(before leakcheck.State) {
	t := s.T
	suite.mu.Lock()
	suite.needles = append(suite.needles, s.Needles()...)
	suite.mu.Unlock()
	after := leakcheck.Take(s.scope())
	for _, leak := range leakcheck.Leaks(before, after) {
		if strings.HasPrefix(leak, "host veth: ") {
			continue // host-wide and shared with other tests; see the bridge's ports below
		}
		t.Errorf("left behind: %s", leak)
	}
	if ports := framework.BridgePorts(t, s.Net.Bridge); len(ports) > 0 {
		t.Errorf("left behind: veths on bridge %s: %v", s.Net.Bridge, ports)
	}
}

func (s *server) scope() leakcheck.Scope {
	return leakcheck.Scope{
		HostLocalDirs: []string{s.Net.IPAMDir},
		CacheDir:      s.CacheDir,
		NetnsDir:      s.NetnsDir(),
		RuleNeedles:   s.Needles(),
	}
}

// podSpec is a crictl pod config.
type podSpec = framework.PodSpec

const containerPort = framework.ContainerPort

// freeHostPort returns a TCP port nothing on the host listens on right now.
func freeHostPort(t *testing.T) int32 { return int32(framework.FreePort(t)) }
