//go:build linux

// Package localcluster brings up a cluster of cnishim nodes on one machine, without containers:
// a node is a network namespace with its own `cnishim serve`, plugged by a veth into an underlay
// bridge in the root namespace. The pod network between the nodes is one of a few Networks
// (kindnet: ptp + host-local + portmap, with static routes to every other node's pod CIDR in
// place of kindnetd; flannel: flanneld's vxlan with etcd, bridge + host-local + portmap).
//
// Traffic stays inside the namespaces Up makes: the underlay bridge in the root namespace has no
// address and no IPv6, nothing is routed from the root namespace to a node or pod, and every
// node's plugins (portmap's iptables rules included) run in that node's namespace. Clusters with
// distinct Config.Prefix values can run at once, even on the same address plan, since the only
// things they share are the names of the links in the root namespace.
//
// Everything Up creates is recorded in a JSON state file in the work dir, so that Load and Down
// from another process tear down what Up made. Up and Down need root.
package localcluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// IPFamily is the cluster's IP family.
type IPFamily string

// The IP families a cluster can have.
const (
	IPv4      IPFamily = "ipv4"
	DualStack IPFamily = "dual"
)

// StateFileName is the state file's name in the work dir.
const StateFileName = "cluster.json"

// Config says what cluster Up makes. Zero fields take the defaults named on each.
type Config struct {
	// Nodes is the number of nodes (default 3, at most 200).
	Nodes int `json:"nodes"`
	// IPFamily is ipv4 (default) or dual.
	IPFamily IPFamily `json:"ipFamily"`
	// Network names the pod network: "kindnet" (default) or "flannel".
	Network string `json:"network"`
	// WorkDir is the absolute directory holding every node's dirs, the node namespaces and the
	// state file. It must be missing or empty.
	WorkDir string `json:"workDir"`
	// Cnishim is the cnishim binary's path (required).
	Cnishim string `json:"cnishim"`
	// CNIBinDir holds the CNI plugins (required), e.g. <repo>/_output/cni/bin.
	CNIBinDir string `json:"cniBinDir"`
	// Prefix starts the name of every link made in the root namespace (default "lc"); at most
	// 10 characters of [a-z0-9]. Clusters up at once need distinct prefixes.
	Prefix string `json:"prefix"`
	// PodCIDRv4 is split into one NodeMaskV4 subnet per node (default 10.244.0.0/16 and 24:
	// node i gets 10.244.i.0/24).
	PodCIDRv4  string `json:"podCIDRv4"`
	NodeMaskV4 int    `json:"nodeMaskV4"`
	// PodCIDRv6 is split likewise for dual stack (default fd00:10:244::/56 and 64).
	PodCIDRv6  string `json:"podCIDRv6"`
	NodeMaskV6 int    `json:"nodeMaskV6"`
	// UnderlayV4 is the node network (default 172.31.250.0/24); node i gets host number 10+i.
	UnderlayV4 string `json:"underlayV4"`
	// UnderlayV6 is the node network for dual stack (default fd00:172:31:250::/64).
	UnderlayV6 string `json:"underlayV6"`
	// ServeArgs are extra flags for every `cnishim serve`.
	ServeArgs []string `json:"serveArgs,omitempty"`
	// KeepLogs makes Down leave each node's serve.log (and the dirs holding them).
	KeepLogs bool `json:"keepLogs,omitempty"`
	// FlannelBinDir holds flanneld, etcd, etcdctl and the flannel CNI plugin
	// (hack/install-flannel.sh); required for the flannel network.
	FlannelBinDir string `json:"flannelBinDir,omitempty"`
}

var prefixRE = regexp.MustCompile(`^[a-z0-9]{1,10}$`)

// withDefaults fills in the defaults and checks c.
func (c Config) withDefaults() (Config, error) {
	c.Nodes = cmp.Or(c.Nodes, 3)
	c.IPFamily = cmp.Or(c.IPFamily, IPv4)
	c.Network = cmp.Or(c.Network, "kindnet")
	c.Prefix = cmp.Or(c.Prefix, "lc")
	c.PodCIDRv4 = cmp.Or(c.PodCIDRv4, "10.244.0.0/16")
	c.NodeMaskV4 = cmp.Or(c.NodeMaskV4, 24)
	c.PodCIDRv6 = cmp.Or(c.PodCIDRv6, "fd00:10:244::/56")
	c.NodeMaskV6 = cmp.Or(c.NodeMaskV6, 64)
	c.UnderlayV4 = cmp.Or(c.UnderlayV4, "172.31.250.0/24")
	c.UnderlayV6 = cmp.Or(c.UnderlayV6, "fd00:172:31:250::/64")
	var errs []error
	if c.Nodes < 1 || c.Nodes > 200 {
		errs = append(errs, fmt.Errorf("nodes %d: want 1 to 200", c.Nodes))
	}
	if c.IPFamily != IPv4 && c.IPFamily != DualStack {
		errs = append(errs, fmt.Errorf("ip family %q: want %q or %q", c.IPFamily, IPv4, DualStack))
	}
	if _, ok := networks[c.Network]; !ok {
		errs = append(errs, fmt.Errorf("network %q: unknown", c.Network))
	}
	if !filepath.IsAbs(c.WorkDir) {
		errs = append(errs, fmt.Errorf("work dir %q: must be absolute", c.WorkDir))
	}
	if c.Network == "flannel" && c.FlannelBinDir == "" {
		errs = append(errs, errors.New("the flannel network needs the flannel bin dir (hack/install-flannel.sh)"))
	}
	if c.Cnishim == "" || c.CNIBinDir == "" {
		errs = append(errs, errors.New("the cnishim binary and the CNI bin dir are required"))
	}
	if !prefixRE.MatchString(c.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: want 1 to 10 of [a-z0-9]", c.Prefix))
	}
	return c, errors.Join(errs...)
}

// Cluster is a cluster Up made or Load read. Its methods are safe for concurrent use on
// distinct nodes.
type Cluster struct {
	// Config is the Config Up was given, with the defaults filled in.
	Config Config
	// Bridge is the underlay bridge in the root namespace.
	Bridge string
	// Nodes are the nodes; Nodes[i].Name is "node<i>".
	Nodes []*Node

	createdWorkDir bool
	mu             sync.Mutex          // guards the state file, down, and every node's server and daemon fields
	down           bool                // Down has begun: the state file is not written again
	daemons        map[string]*process // the network's daemons of the whole cluster (etcd); guarded by mu
}

// Node is one node of a cluster. Its exported fields do not change after Up.
type Node struct {
	// Name is "node<Index>".
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Dir holds the node's files; NetNSPath is its network namespace's bind mount.
	Dir       string `json:"dir"`
	NetNSPath string `json:"netnsPath"`
	// HostVeth is the node's veth on the underlay bridge, in the root namespace; its peer is
	// eth0 in the node.
	HostVeth string `json:"hostVeth"`
	// IPs are the node's underlay addresses (IPv4 first), PodCIDRs its pod subnets (likewise).
	IPs      []netip.Addr   `json:"ips"`
	PodCIDRs []netip.Prefix `json:"podCIDRs"`
	// Socket is the CRI socket of the node's server; CrictlConfig a crictl config for it
	// (CRI_CONFIG_FILE=<CrictlConfig> crictl ...).
	Socket       string `json:"socket"`
	CrictlConfig string `json:"crictlConfig"`
	// The server's dirs and its log (appended to across restarts).
	ConfDir  string `json:"confDir"`
	CacheDir string `json:"cacheDir"`
	StateDir string `json:"stateDir"`
	Log      string `json:"log"`

	// SubnetFile is where the network's daemon writes the node's pod subnets (flannel's
	// subnet.env); "" for a network without one.
	SubnetFile string `json:"subnetFile,omitempty"`

	cluster *Cluster
	server  *process            // nil when Up or StartServer did not start one; guarded by cluster.mu
	daemons map[string]*process // the network's daemons on the node (flanneld); guarded by cluster.mu
}

// Node returns the i-th node (0-based: Node(0) is "node0").
func (c *Cluster) Node(i int) *Node { return c.Nodes[i] }

// StateFile is the path of the cluster's state file.
func (c *Cluster) StateFile() string { return filepath.Join(c.Config.WorkDir, StateFileName) }

// stateFile is the state file's content.
type stateFile struct {
	Config         Config              `json:"config"`
	Bridge         string              `json:"bridge"`
	CreatedWorkDir bool                `json:"createdWorkDir"`
	Nodes          []nodeState         `json:"nodes"`
	Daemons        map[string]*process `json:"daemons,omitempty"`
}

type nodeState struct {
	*Node
	Server  *process            `json:"server,omitempty"`
	Daemons map[string]*process `json:"daemons,omitempty"`
}

// save writes the state file; c.mu must be held.
func (c *Cluster) save() error {
	if c.down {
		return nil
	}
	st := stateFile{Config: c.Config, Bridge: c.Bridge, CreatedWorkDir: c.createdWorkDir, Daemons: c.daemons}
	for _, n := range c.Nodes {
		st.Nodes = append(st.Nodes, nodeState{Node: n, Server: n.server, Daemons: n.daemons})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.StateFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := os.Rename(tmp, c.StateFile()); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// saveLocked is save with c.mu taken.
func (c *Cluster) saveLocked() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.save()
}

// Load reads the cluster an Up (in this or another process) recorded in the state file at path, so that
// Down or the node methods can act on it.
func Load(path string) (*Cluster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("cluster state %s: %w", path, err)
	}
	c := &Cluster{Config: st.Config, Bridge: st.Bridge, createdWorkDir: st.CreatedWorkDir, daemons: st.Daemons}
	for _, ns := range st.Nodes {
		if ns.Node == nil {
			return nil, fmt.Errorf("cluster state %s: a node without fields", path)
		}
		ns.Node.cluster = c
		ns.Node.server = ns.Server
		ns.Node.daemons = ns.Daemons
		c.Nodes = append(c.Nodes, ns.Node)
	}
	return c, nil
}
