//go:build linux

package localcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// flannel is kube-flannel's network with etcd in place of the Kubernetes API: one etcd for the
// cluster (in node0's namespace, on node0's IPv4 underlay address), flanneld with the vxlan
// backend on every node (in the node's namespace, on eth0), and kube-flannel's conflist: the
// flannel CNI plugin delegating to bridge + host-local, then portmap. flanneld leases each node
// a subnet of its choice from etcd and writes it to the node's subnet.env; Up reads the node's
// PodCIDRs from there.
type flannel struct{}

// FlanneldDaemon names flanneld among a node's daemons (Node.DaemonPID).
const FlanneldDaemon = "flanneld"

// flannel's cluster daemon, its ports and timeouts.
const (
	etcdDaemon = "etcd"
	// etcdClientPort is etcd's client port on node0's underlay address; its peer port is on
	// node0's loopback.
	etcdClientPort = 2379
	// flannelEtcdPrefix is flanneld's default etcd prefix; its network config is under it.
	flannelEtcdPrefix = "/coreos.com/network"
	// flannelReadyTimeout bounds the wait for etcd, subnet.env and the routes to other nodes.
	flannelReadyTimeout = 2 * time.Minute
)

func (flannel) Name() string { return "flannel" }

func (flannel) prerequisites(c *Cluster) []string {
	var out []string
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		out = append(out, filepath.Join(c.Config.CNIBinDir, p))
	}
	for _, p := range []string{"flanneld", "etcd", "etcdctl", "flannel"} {
		out = append(out, filepath.Join(c.Config.FlannelBinDir, p))
	}
	return out
}

func (flannel) binDirs(c *Cluster) []string { return []string{c.Config.FlannelBinDir} }

// Conflist is kube-flannel's conflist, with the plugin's subnet file, its dataDir and
// host-local's store under the node's dir. The flannel plugin of containernetworking/plugins
// v0.9.1 speaks CNI 0.3.1 at most.
func (flannel) Conflist(c *Cluster, n *Node) ([]byte, error) {
	type obj = map[string]any
	conf := obj{
		"name":       "cbr0",
		"cniVersion": "0.3.1",
		"plugins": []any{
			obj{
				"type":       "flannel",
				"subnetFile": n.SubnetFile,
				"dataDir":    FlannelDataDir(n),
				"ipam":       obj{"type": "host-local", "dataDir": n.Dir + "/cni-ipam-state"},
				"delegate":   obj{"hairpinMode": true, "isDefaultGateway": true},
			},
			obj{"type": "portmap", "capabilities": obj{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// FlannelDataDir is where the flannel CNI plugin keeps the delegate config of each pod on n
// until its DEL: a file left there once the pods are gone is a leak.
func FlannelDataDir(n *Node) string { return filepath.Join(n.Dir, "flannel-cni") }

func etcdEndpoint(c *Cluster) string {
	return "http://" + netip.AddrPortFrom(c.Nodes[0].IPs[0], etcdClientPort).String()
}

// SetUp starts etcd, puts flannel's network config into it, starts flanneld on every node and
// waits until each has written its subnet.env and has routes to every other node's subnets.
func (f flannel) SetUp(ctx context.Context, c *Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, flannelReadyTimeout)
	defer cancel()
	if err := startEtcd(ctx, c); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		n.SubnetFile = filepath.Join(n.Dir, "subnet.env")
		if err := startFlanneld(c, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	for _, n := range c.Nodes {
		cidrs, err := waitSubnetFile(ctx, c, n, nil)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		n.PodCIDRs = cidrs
	}
	if err := c.saveLocked(); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := waitRoutes(ctx, c, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// startEtcd starts a one-member etcd in node0's namespace and puts flannel's network config
// into it.
func startEtcd(ctx context.Context, c *Cluster) error {
	n0 := c.Nodes[0]
	peer := "http://127.0.0.1:2380"
	client := etcdEndpoint(c)
	p, err := c.startDaemon(nil, etcdDaemon, n0.NetNSPath, filepath.Join(n0.Dir, "etcd.log"),
		filepath.Join(c.Config.FlannelBinDir, "etcd"),
		"--name", "localcluster",
		"--data-dir", filepath.Join(n0.Dir, "etcd"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "localcluster="+peer,
		"--initial-cluster-state", "new",
	)
	if err != nil {
		return err
	}
	type obj = map[string]any
	conf := obj{
		"Network":   c.Config.PodCIDRv4,
		"SubnetLen": c.Config.NodeMaskV4,
		"Backend":   obj{"Type": "vxlan"},
	}
	if c.Config.IPFamily == DualStack {
		conf["EnableIPv6"] = true
		conf["IPv6Network"] = c.Config.PodCIDRv6
		conf["IPv6SubnetLen"] = c.Config.NodeMaskV6
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	// etcd answers once it has elected itself; until then a put fails.
	var last error
	for {
		if !p.alive() {
			return fmt.Errorf("etcd exited at start (log: %s): %w", filepath.Join(n0.Dir, "etcd.log"), last)
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, last = n0.Exec(cctx, filepath.Join(c.Config.FlannelBinDir, "etcdctl"), "--endpoints", client,
			"--dial-timeout", "2s", "put", flannelEtcdPrefix+"/config", string(b))
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("put flannel's config into etcd: %w", errors.Join(last, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startFlanneld starts flanneld in n's namespace, with kube-flannel's --ip-masq (its rules
// leave traffic between pods alone).
func startFlanneld(c *Cluster, n *Node) error {
	_, err := c.startDaemon(n, FlanneldDaemon, n.NetNSPath, filepath.Join(n.Dir, "flanneld.log"),
		filepath.Join(c.Config.FlannelBinDir, "flanneld"),
		"--etcd-endpoints", etcdEndpoint(c),
		"--iface", "eth0",
		"--subnet-file", n.SubnetFile,
		"--ip-masq",
	)
	return err
}

// restartDaemon stops flanneld on n gracefully and starts it again, and waits until it has
// written subnet.env anew (it may not change: flanneld takes its lease back) and the routes to
// the other nodes are in place.
func (flannel) restartDaemon(ctx context.Context, n *Node) error {
	c := n.cluster
	ctx, cancel := context.WithTimeout(ctx, flannelReadyTimeout)
	defer cancel()
	old, err := os.Stat(n.SubnetFile)
	if err != nil {
		return err
	}
	if err := c.stopDaemon(n, FlanneldDaemon, 30*time.Second); err != nil {
		return err
	}
	if err := startFlanneld(c, n); err != nil {
		return err
	}
	if _, err := waitSubnetFile(ctx, c, n, old); err != nil {
		return err
	}
	return waitRoutes(ctx, c, n)
}

// waitSubnetFile waits until flanneld on n has written subnet.env (a file other than old,
// when old is not nil: flanneld replaces it by a rename) with a subnet of each of the
// cluster's families, and returns them, IPv4 first. It fails at once if flanneld exits.
func waitSubnetFile(ctx context.Context, c *Cluster, n *Node, old os.FileInfo) ([]netip.Prefix, error) {
	c.mu.Lock()
	p := n.daemons[FlanneldDaemon]
	c.mu.Unlock()
	want := 1
	if c.Config.IPFamily == DualStack {
		want = 2
	}
	var last error
	for {
		var cidrs []netip.Prefix
		fi, err := os.Stat(n.SubnetFile)
		if err == nil && old != nil && os.SameFile(fi, old) {
			err = errors.New("not written again yet")
		}
		if err == nil {
			cidrs, err = ReadSubnetFile(n.SubnetFile)
		}
		if err == nil && len(cidrs) != want {
			err = fmt.Errorf("%s: subnets %v; want %d", n.SubnetFile, cidrs, want)
		}
		if err == nil {
			return cidrs, nil
		}
		last = err
		if p == nil || !p.alive() {
			return nil, fmt.Errorf("flanneld exited (log: %s): %w", filepath.Join(n.Dir, "flanneld.log"), last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("flanneld's subnet file (log: %s): %w", filepath.Join(n.Dir, "flanneld.log"), errors.Join(last, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReadSubnetFile reads the pod subnets (IPv4 first) flanneld wrote to a subnet.env.
func ReadSubnetFile(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var v4, v6 []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		if k != "FLANNEL_SUBNET" && k != "FLANNEL_IPV6_SUBNET" {
			continue
		}
		// flanneld writes the subnet's first address (the bridge's) with its length.
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, k, err)
		}
		if k == "FLANNEL_SUBNET" {
			v4 = append(v4, p.Masked())
		} else {
			v6 = append(v6, p.Masked())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return append(v4, v6...), nil
}

// waitRoutes waits until n has a route to every other node's pod subnets (flanneld's vxlan
// backend adds them as it learns the other nodes' leases from etcd).
func waitRoutes(ctx context.Context, c *Cluster, n *Node) error {
	var last error
	for {
		last = n.withHandle(func(h *netlink.Handle) error {
			for _, m := range c.Nodes {
				if m == n {
					continue
				}
				for _, p := range m.PodCIDRs {
					if _, err := h.RouteGet(p.Addr().Next().AsSlice()); err != nil {
						return fmt.Errorf("no route to %s of node %s: %w", p, m.Name, err)
					}
				}
			}
			return nil
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
