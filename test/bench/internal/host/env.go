//go:build linux

// Package host prepares the machine for a benchmark run (a conf dir, network namespaces)
// and checks, after every run, that nothing was left behind: host-local reservations, veths,
// interfaces in the pods' namespaces, libcni cache files, iptables and nftables rules, netns
// mounts. It also reads the process's CPU and memory figures.
package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
)

// HostIP is the host address of every port mapping; nothing is ever sent to it.
const HostIP = "127.0.0.1"

// Names are a benchmark network's name, bridge and subnet. They exist only on this machine:
// the bridge and the pods' namespaces are created by a run and removed after it. Tests that
// may run at the same time use different names.
type Names struct {
	Network, Bridge, Subnet string
}

// Bench are the benchmark's names.
var Bench = Names{Network: "cnibench", Bridge: "cnibench0", Subnet: "10.199.0.0/16"}

// Env is one benchmark run's scratch space: a conf dir holding the benchmark conflist, the
// libcni cache dir of every implementation, host-local's data dir and the directory of the
// pods' namespaces, all under one temporary directory, on one filesystem.
type Env struct {
	Names
	Root     string
	ConfDir  string
	BinDir   string
	CacheDir string
	IPAMDir  string
	NetNSDir string

	// slow and slowBinDir are the slow-IPAM network and the directory of its IPAM plugin,
	// once AddSlowNetwork ran.
	slow       *Names
	slowBinDir string
}

// NewEnv creates the scratch directories under a new temporary directory and writes the
// benchmark conflist (bridge + host-local + portmap, CNI cniVersion) into the conf dir. A
// bridge left by an interrupted earlier run is removed first.
func NewEnv(binDir, cniVersion string, names Names) (_ *Env, retErr error) {
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			return nil, fmt.Errorf("plugin %s: %w (run hack/install-cni-plugins.sh)", p, err)
		}
	}
	if err := deleteBridge(names.Bridge); err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "cnibench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(root)
		}
	}()
	e := &Env{
		Names:    names,
		Root:     root,
		ConfDir:  filepath.Join(root, "net.d"),
		BinDir:   binDir,
		CacheDir: filepath.Join(root, "cache"),
		IPAMDir:  filepath.Join(root, "ipam"),
		NetNSDir: filepath.Join(root, "netns"),
	}
	for _, d := range []string{e.ConfDir, e.CacheDir, e.IPAMDir, e.NetNSDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(e.ConfDir, "10-cnibench.conflist"), e.ConfList(cniVersion), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// ConfList returns the benchmark network's conflist at the given cniVersion.
func (e *Env) ConfList(cniVersion string) []byte {
	return bridgeConfList(cniVersion, e.Names, "host-local", "", e.IPAMDir)
}

// bridgeConfList is a network of the benchmark: bridge with the IPAM plugin ipamType
// allocating from the network's subnet (host-local's data in ipamDir) + portmap. A
// behaviorFile, if set, is the "behavior" key bridge passes on to a cnitest IPAM.
func bridgeConfList(cniVersion string, n Names, ipamType, behaviorFile, ipamDir string) []byte {
	behaviorKey := ""
	if behaviorFile != "" {
		behaviorKey = fmt.Sprintf("\n      \"behavior\": %q,", behaviorFile)
	}
	return fmt.Appendf(nil, `{
  "cniVersion": %q,
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,%s
      "ipam": {
        "type": %q,
        "ranges": [[{"subnet": %q}]],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cniVersion, n.Network, n.Bridge, behaviorKey, ipamType, n.Subnet, ipamDir)
}

// Impl returns the implementation configuration for this environment.
func (e *Env) Impl(limits *impls.Limits) impls.Config {
	return impls.Config{ConfDir: e.ConfDir, BinDir: e.BinDir, CacheDir: e.CacheDir, Limits: limits}
}

// CreateNetNS creates each pod's network namespace (pods[i].NetNS is set) with a few
// workers. On error, the namespaces it made are removed again.
func (e *Env) CreateNetNS(pods []impls.PodSpec) error {
	err := parallel(len(pods), 4, func(i int) error {
		p, err := netns.Create(e.NetNSDir, pods[i].Name+"-"+pods[i].ID[:8])
		pods[i].NetNS = p
		return err
	})
	if err != nil {
		_ = e.RemoveNetNS(pods)
	}
	return err
}

// RemoveNetNS removes the pods' namespaces and checks that no namespace mount is left in
// the environment's netns dir.
func (e *Env) RemoveNetNS(pods []impls.PodSpec) error {
	err := parallel(len(pods), 4, func(i int) error {
		if pods[i].NetNS == "" {
			return nil
		}
		return netns.Remove(pods[i].NetNS)
	})
	left, lerr := netns.Mounted(e.NetNSDir)
	return errors.Join(err, lerr, leftErr("netns mounts", left))
}

func leftErr(what string, left []string) error {
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("%s left: %d (%v)", what, len(left), first(left, 5))
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// Sweep deletes every pod from the benchmark network with raw libcni and the environment's
// cache (every implementation's), so that whatever an interrupted or failed run left is
// released. DEL is idempotent for the benchmark's plugins.
func (e *Env) Sweep(ctx context.Context, pods []impls.PodSpec) error {
	list, err := impls.DefaultConfList(e.ConfDir)
	if err != nil {
		return err
	}
	// Every network the pods may be on, with each interface name they may have there: the
	// slow network is a pod's only network (eth0) or its extra one (impls.ExtraIfName).
	type attachment struct {
		list   *libcni.NetworkConfigList
		ifName string
	}
	atts := []attachment{{list, "eth0"}}
	dirs := []string{e.BinDir}
	if e.slow != nil {
		slow, err := e.slowList()
		if err != nil {
			return err
		}
		atts = append(atts, attachment{slow, "eth0"}, attachment{slow, impls.ExtraIfName})
		dirs = append(dirs, e.slowBinDir)
	}
	// Every implementation's cache is the environment's.
	caches := []*libcni.CNIConfig{libcni.NewCNIConfigWithCacheDir(dirs, e.CacheDir, impls.DefaultExec())}
	err = parallel(len(pods), 4, func(i int) error {
		var errs []error
		for _, c := range caches {
			for _, a := range atts {
				rt := impls.RuntimeConf(&pods[i])
				rt.IfName = a.ifName
				if err := c.DelNetworkList(ctx, a.list, rt); err != nil {
					errs = append(errs, fmt.Errorf("sweep pod %s from %s (%s): %w", &pods[i], a.list.Name, a.ifName, err))
				}
			}
		}
		// go-cni's loopback attachment leaves only a cache file.
		_ = os.Remove(filepath.Join(e.CacheDir, "results", "cni-loopback-"+pods[i].ID+"-lo"))
		return errors.Join(errs...)
	})
	// A plugin killed half-way through ADD can leave rules its DEL no longer finds (bridge
	// tears ipMasq down only for the addresses still on the pod's interface).
	return errors.Join(err, e.scrubRules(pods))
}

// Close removes the benchmark bridge (and the slow network's) and the scratch directories.
func (e *Env) Close() error {
	var err error
	for _, n := range e.networks() {
		err = errors.Join(err, deleteBridge(n.Bridge))
	}
	return errors.Join(err, os.RemoveAll(e.Root))
}

func deleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("bridge %s: delete: %w", name, err)
	}
	return nil
}

// parallel runs f(0..n-1) on up to width goroutines and joins the errors.
func parallel(n, width int, f func(i int) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range min(width, n) {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}
