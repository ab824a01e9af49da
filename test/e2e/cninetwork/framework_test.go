//go:build linux

package cninetwork_test

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// requiredPlugins are the real plugins these tests run; hack/install-cni-plugins.sh builds them.
var requiredPlugins = []string{"bridge", "host-local", "loopback", "portmap", "bandwidth"}

// cniBinDir returns the real plugins' directory; see framework.RequireEnv for a test without
// them or without root.
func cniBinDir(t *testing.T) string {
	t.Helper()
	return framework.RequireEnv(t, framework.Needs{Plugins: requiredPlugins}).CNIBin
}

var netSeq atomic.Int32

// node is one test's private piece of a node: conf, cache, netns and host-local dirs, and a
// bridge and subnets no other test uses. Its cleanup removes the bridge and fails the test if
// anything the test's pods used is left behind.
type node struct {
	t        *testing.T
	binDir   string
	confDir  string
	cacheDir string
	nsDir    string
	ipamDir  string
	seq      int
	bridges  []string
	netns    []string
	ids      []string
	before   leakcheck.State
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{
		t:        t,
		binDir:   cniBinDir(t),
		confDir:  t.TempDir(),
		cacheDir: t.TempDir(),
		nsDir:    t.TempDir(),
		ipamDir:  t.TempDir(),
		seq:      int(netSeq.Add(1)) + os.Getpid()%50*4,
	}
	n.before = leakcheck.Take(n.scope())
	t.Cleanup(func() {
		// Read what is left while the pods' namespaces still exist: removing a namespace
		// destroys its veth pair and would hide a veth the plugin failed to delete.
		after := leakcheck.Take(n.scope())
		for _, p := range n.netns {
			_ = netns.Remove(p)
		}
		for _, b := range n.bridges {
			if l, err := netlink.LinkByName(b); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
		for _, leak := range leakcheck.Leaks(n.before, after) {
			t.Errorf("left behind: %s", leak)
		}
	})
	return n
}

func (n *node) scope() leakcheck.Scope {
	return leakcheck.Scope{
		HostLocalDirs: []string{n.ipamDir},
		CacheDir:      n.cacheDir,
		Bridges:       n.bridges,
		RuleNeedles:   n.ids,
	}
}

// subnet4 returns the test's k-th IPv4 /24; it lies inside 10.211.0.0/16, which exists only on
// the test's own bridges.
func (n *node) subnet4(k int) string { return fmt.Sprintf("10.211.%d.0/24", (n.seq*4+k)%256) }

func (n *node) subnet6(k int) string { return fmt.Sprintf("fd00:211:%x::/64", n.seq*4+k) }

// bridge returns a bridge name unique to this test and registers it for removal.
func (n *node) bridge(k int) string {
	b := fmt.Sprintf("cnie2e%d-%d", n.seq, k)
	n.bridges = append(n.bridges, b)
	return b
}

// writeConf writes a conflist into the conf dir by rename, so the watcher never sees it
// half-written.
func (n *node) writeConf(file, body string) {
	n.t.Helper()
	framework.WriteFileAtomic(n.t, n.confDir, file, body)
}

// bridgeConf is a bridge + host-local conflist; extra plugins JSON objects follow the bridge.
func (n *node) bridgeConf(name, bridge string, ranges string, extra ...string) string {
	plugins := []string{fmt.Sprintf(`{
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": %s}
    }`, bridge, n.ipamDir, ranges)}
	return framework.Conflist("1.0.0", name, append(plugins, extra...)...)
}

func v4Ranges(subnet string) string { return fmt.Sprintf(`[[{"subnet": %q}]]`, subnet) }

// plugin starts a cninetwork.Plugin on the node and stops it at cleanup.
func (n *node) plugin(opts ...cninetwork.Option) *cninetwork.Plugin {
	n.t.Helper()
	return framework.StartPlugin(n.t, append([]cninetwork.Option{
		cninetwork.WithConfDir(n.confDir),
		cninetwork.WithBinDirs(n.binDir),
		cninetwork.WithCacheDir(n.cacheDir),
		cninetwork.WithOperationTimeout(time.Minute),
	}, opts...)...)
}

// pod makes a pod with a fresh netns; the netns is removed at cleanup.
func (n *node) pod(name string) *cninetwork.Pod {
	n.t.Helper()
	p := framework.NewPod(n.t, n.nsDir, name, "e2e")
	n.netns = append(n.netns, p.NetNS)
	n.ids = append(n.ids, p.SandboxID)
	return p
}

// inNetns runs fn on a locked OS thread inside the namespace at path. Sockets fn creates stay
// in that namespace after it returns.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: if switching back failed it must not be reused, and Go
		// ends a goroutine's locked thread when the goroutine exits.
		orig, err := vnetns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := vnetns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := vnetns.Set(target); err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := vnetns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// listen starts a TCP echo-once listener inside the netns; it answers each connection with
// reply and closes it. The listener is closed at cleanup.
func listen(t *testing.T, nsPath, addr, reply string) net.Addr {
	t.Helper()
	var ln net.Listener
	if err := inNetns(nsPath, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, nsPath, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			_ = c.Close()
		}
	}()
	return ln.Addr()
}

// fetch connects to addr (from inside nsPath when it is not empty) and returns what it reads.
func fetch(nsPath, addr string) (string, error) {
	var out string
	do := func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		k, err := c.Read(buf)
		out = string(buf[:k])
		if k > 0 {
			return nil
		}
		return err
	}
	if nsPath == "" {
		return out, do()
	}
	return out, inNetns(nsPath, do)
}

func removeNetns(path string) error { return netns.Remove(path) }
