//go:build linux

// Package reliability proves, against real plugins in real network namespaces, that cnishim
// keeps a node's pod networking intact when plugins misbehave and when its inputs are bad:
// every caller gets a clear error in bounded time, and nothing (IP, veth, netns, cache entry,
// rule, process, goroutine) is left behind. Each test drives both the cninetwork Plugin API and
// a real `cnishim serve` process over its CRI socket. It is built on test/framework.
//
// Prerequisites: root; the plugins of hack/install-cni-plugins.sh in $CNISHIM_TEST_CNI_BIN
// (default <repo>/_output/cni/bin); the cnishim binary in $CNISHIM_TEST_CNISHIM (built by
// TestMain with -race when that is unset). The cnitest fault-injection plugin is built by
// TestMain. Under make test and CI (CNISHIM_REQUIRE_ROOT_TESTS=1), and whenever run as root,
// the tests fail without them; a plain go test by a user who is not root skips them
// (internal/testing/roottest).
//
// The tests of this package do not run in parallel with each other: they count the test
// process's goroutines and child processes.
package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// env holds the prerequisites TestMain found.
var env *framework.Env

func TestMain(m *testing.M) {
	framework.Main(m, "test/reliability", framework.Needs{
		Plugins: []string{"bridge", "host-local", "portmap", "loopback"},
		Cnishim: true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			if _, err := plugintest.Build(); err != nil {
				return nil, err
			}
			return plugintest.Cleanup, nil
		},
	})
}

// nodeSlots tell the tests' nodes apart: 10.88.128.0/18 exists only on their bridges.
var nodeSlots = framework.Slots{Procs: 8, Per: 8}

// node is one test's private piece of a node: conf, cache, netns and host-local dirs, a bin
// dir for the cnitest plugin, and a bridge and two IPv4 /24s no other test uses (inside
// 10.88.128.0/18, which exists only on these tests' bridges). Its cleanup removes the
// namespaces it made and the bridge.
type node struct {
	t        *testing.T
	dir      string
	confDir  string
	cacheDir string
	nsDir    string
	ipamDir  string
	binDir   string
	bridge   string
	net      *framework.Net // the bridge network, on the first subnet
	subnets  [2]string

	mu    sync.Mutex
	netns []string
	ids   []string
}

func newNode(t *testing.T) *node {
	t.Helper()
	k := nodeSlots.Next()
	dir := t.TempDir()
	n := &node{
		t:        t,
		dir:      dir,
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cache"),
		nsDir:    filepath.Join(dir, "netns"),
		ipamDir:  filepath.Join(dir, "ipam"),
		binDir:   filepath.Join(dir, "bin"),
		bridge:   fmt.Sprintf("cnirel%d", k),
		subnets:  [2]string{fmt.Sprintf("10.88.%d.0/24", 128+k), fmt.Sprintf("10.88.%d.0/24", 192+k%64)},
	}
	for _, d := range []string{n.confDir, n.binDir, n.ipamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.net = framework.NewNet(t, "bridge", n.bridge, n.subnets[0])
	n.net.IPAMDir = filepath.Join(n.ipamDir, "bridge")
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.netns {
			if err := netns.Remove(p); err != nil {
				t.Errorf("remove netns %s: %v", p, err)
			}
		}
	})
	return n
}

// scope is where the node's pods can leave something behind, but for rules: host-local
// stores, the cache dir, the namespace dir nsDir (the node's own, or a server's; "" for none)
// and the bridge's veths. Reading the rules runs iptables-save and nft, slow on a busy machine,
// so tests read them once before and once after (ruleScope).
func (n *node) scope(nsDir, cacheDir string) leakcheck.Scope {
	return leakcheck.Scope{
		HostLocalDirs: []string{filepath.Join(n.ipamDir, "bridge"), filepath.Join(n.ipamDir, "faulty")},
		CacheDir:      cacheDir,
		NetnsDir:      nsDir,
		Bridges:       []string{n.bridge},
	}
}

// ruleScope is where portmap rules of the node's sandboxes would be: rules naming any sandbox
// ID the test used.
func (n *node) ruleScope() leakcheck.Scope {
	n.mu.Lock()
	defer n.mu.Unlock()
	return leakcheck.Scope{RuleNeedles: slices.Clone(n.ids)}
}

// addNeedle registers a sandbox ID (or other string) whose presence in a rule is a leak.
func (n *node) addNeedle(s string) {
	n.mu.Lock()
	n.ids = append(n.ids, s)
	n.mu.Unlock()
}

// writeConf writes a config file into the conf dir by rename, so no watcher sees it
// half-written.
func (n *node) writeConf(file, body string) {
	n.t.Helper()
	framework.WriteFileAtomic(n.t, n.confDir, file, body)
}

// bridgePlugin is the JSON of a bridge plugin on the node's bridge with host-local IPAM on the
// node's first subnet.
func (n *node) bridgePlugin() string { return n.net.BridgePlugin() }

// faultyPlugin is the JSON of the cnitest plugin installed as "faulty", told what to do by the
// behavior file, with host-local IPAM on the node's second subnet (which the plugin delegates
// to when its behavior says so).
func (n *node) faultyPlugin(behaviorFile string) string {
	return fmt.Sprintf(`{
      "type": "faulty", "behavior": %q,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, behaviorFile, filepath.Join(n.ipamDir, "faulty"), n.subnets[1])
}

// conflist returns a network list of the given plugins' JSON.
func conflist(cniVersion, name string, plugins ...string) string {
	return framework.Conflist(cniVersion, name, plugins...)
}

// installFaulty installs the cnitest plugin into the node's bin dir as "faulty" and returns
// its path.
func (n *node) installFaulty() string {
	n.t.Helper()
	return plugintest.MustInstallAs(n.t, n.binDir, "faulty")[0]
}

// pod returns a pod with a fresh network namespace, removed at cleanup.
func (n *node) pod(name string) *cninetwork.Pod {
	n.t.Helper()
	p := framework.NewPod(n.t, n.nsDir, name, "reliability")
	n.addNeedle(p.SandboxID)
	n.mu.Lock()
	n.netns = append(n.netns, p.NetNS)
	n.mu.Unlock()
	return p
}

// removeNetns removes a pod's namespace before cleanup would.
func (n *node) removeNetns(path string) {
	n.t.Helper()
	if err := netns.Remove(path); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.netns = slices.DeleteFunc(n.netns, func(p string) bool { return p == path })
	n.mu.Unlock()
}

// plugin starts a cninetwork.Plugin on the node, with the real plugins and the node's bin dir,
// and closes it at cleanup.
func (n *node) plugin(timeout time.Duration, opts ...cninetwork.Option) *cninetwork.Plugin {
	n.t.Helper()
	return framework.StartPlugin(n.t, append([]cninetwork.Option{
		cninetwork.WithConfDir(n.confDir),
		cninetwork.WithBinDirs(env.CNIBin, n.binDir),
		cninetwork.WithCacheDir(n.cacheDir),
		cninetwork.WithOperationTimeout(timeout),
	}, opts...)...)
}

// server is one `cnishim serve` process on a node, and a CRI client connected to it.
type server = framework.Server

// serverOpts are how a test starts a server.
type serverOpts struct {
	// timeout is --operation-timeout.
	timeout time.Duration
	// env is added to the server's environment.
	env []string
	// sockDir, if set, is the directory of the socket (default: the server's dir).
	sockDir string
	// stateDir, if set, is --state-dir (default: "state" in the server's dir).
	stateDir string
}

// startServer starts cnishim serve on the node's conf dir, the real plugins and the node's bin
// dir, with a cache dir of its own and metrics, and waits until it answers on its socket. At
// cleanup it removes any sandbox left, stops the server with SIGTERM (it must exit 0) and fails
// the test if the server's log reports a data race.
func startServer(t *testing.T, n *node, o serverOpts) *server {
	t.Helper()
	fo := framework.Options{
		ConfDir:          n.confDir,
		BinDirs:          []string{env.CNIBin, n.binDir},
		StateDir:         o.stateDir,
		OperationTimeout: o.timeout,
		Verbosity:        2,
		Metrics:          true,
		Env:              o.env,
	}
	if o.sockDir != "" {
		fo.Sock = filepath.Join(o.sockDir, "cri.sock")
	}
	return framework.StartServer(t, env, fo)
}

// podConfig is a CRI sandbox config for a pod in the "reliability" namespace.
func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "reliability", Uid: "uid-" + name},
		Hostname: "h",
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// waitServerReady waits until the server's CRI Status reports NetworkReady.
func waitServerReady(t *testing.T, s *server) {
	t.Helper()
	framework.Eventually(t, "network ready", func() string {
		st, err := s.RT.Status(t.Context(), &runtimeapi.StatusRequest{})
		if err != nil {
			return err.Error()
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == runtimeapi.NetworkReady && !c.GetStatus() {
				return c.GetMessage()
			}
		}
		return ""
	})
}
