//go:build linux

package localcluster

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cnishim/cnishim/internal/lib/netns"
)

// Up makes the cluster cfg describes and returns once every node's server answers and reports
// its network ready. On error it tears down whatever it made.
func Up(ctx context.Context, cfg Config) (_ *Cluster, retErr error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	c := &Cluster{Config: cfg}
	prereqs := []string{filepath.Join(cfg.CNIBinDir, "ptp"), filepath.Join(cfg.CNIBinDir, "host-local"), filepath.Join(cfg.CNIBinDir, "portmap")}
	if nw, ok := networks[cfg.Network].(prereqNetwork); ok {
		prereqs = nw.prerequisites(c)
	}
	for _, p := range append([]string{cfg.Cnishim}, prereqs...) {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("cluster prerequisite: %w", err)
		}
	}
	if err := c.makeWorkDir(); err != nil {
		return nil, err
	}
	if err := c.plan(); err != nil {
		return nil, err
	}
	if err := c.saveLocked(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, c.Down(context.WithoutCancel(ctx)))
		}
	}()
	// The state file names each link and namespace once it exists, and only then: Down
	// deletes what the file names, never a link of the same name someone else made.
	if err := c.makeBridge(cfg.Prefix + "-br"); err != nil {
		return nil, err
	}
	if err := c.saveLocked(); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		err := n.makeNode()
		if serr := c.saveLocked(); err == nil {
			err = serr
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	network := networks[cfg.Network]
	if err := network.SetUp(ctx, c); err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Network, err)
	}
	for _, n := range c.Nodes {
		conf, err := network.Conflist(c, n)
		if err != nil {
			return nil, fmt.Errorf("node %s: conflist: %w", n.Name, err)
		}
		if err := os.WriteFile(filepath.Join(n.ConfDir, "10-"+cfg.Network+".conflist"), conf, 0o644); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.StartServer(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// makeWorkDir creates the work dir, or checks that an existing one is empty.
func (c *Cluster) makeWorkDir() error {
	entries, err := os.ReadDir(c.Config.WorkDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(c.Config.WorkDir, 0o755); err != nil {
			return fmt.Errorf("work dir: %w", err)
		}
		c.createdWorkDir = true
	case err != nil:
		return fmt.Errorf("work dir: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("work dir %s is not empty (a cluster is up there? take it down with Down)", c.Config.WorkDir)
	}
	return nil
}

// plan fills in the nodes: names, addresses, subnets and paths.
func (c *Cluster) plan() error {
	cfg := c.Config
	type family struct {
		pods     string
		nodeMask int
		underlay string
	}
	fams := []family{{cfg.PodCIDRv4, cfg.NodeMaskV4, cfg.UnderlayV4}}
	if cfg.IPFamily == DualStack {
		fams = append(fams, family{cfg.PodCIDRv6, cfg.NodeMaskV6, cfg.UnderlayV6})
	}
	for i := range cfg.Nodes {
		name := fmt.Sprintf("node%d", i)
		dir := filepath.Join(cfg.WorkDir, name)
		n := &Node{
			Name:         name,
			Index:        i,
			Dir:          dir,
			NetNSPath:    filepath.Join(cfg.WorkDir, "netns", cfg.Prefix+"-"+name),
			Socket:       filepath.Join(dir, "cri.sock"),
			CrictlConfig: filepath.Join(dir, "crictl.yaml"),
			ConfDir:      filepath.Join(dir, "net.d"),
			CacheDir:     filepath.Join(dir, "cni-cache"),
			StateDir:     filepath.Join(dir, "state"),
			Log:          filepath.Join(dir, "serve.log"),
			cluster:      c,
		}
		for _, f := range fams {
			pods, err := netip.ParsePrefix(f.pods)
			if err != nil {
				return fmt.Errorf("pod CIDR: %w", err)
			}
			sub, err := nthSubnet(pods, f.nodeMask, i)
			if err != nil {
				return fmt.Errorf("pod CIDR of %s: %w", name, err)
			}
			under, err := netip.ParsePrefix(f.underlay)
			if err != nil {
				return fmt.Errorf("underlay: %w", err)
			}
			if pods.Addr().Is4() != under.Addr().Is4() {
				return fmt.Errorf("pod CIDR %s and underlay %s: families differ", pods, under)
			}
			ip, err := nthSubnet(under, under.Addr().BitLen(), 10+i)
			if err != nil {
				return fmt.Errorf("underlay address of %s: %w", name, err)
			}
			n.PodCIDRs = append(n.PodCIDRs, sub)
			n.IPs = append(n.IPs, ip.Addr())
		}
		c.Nodes = append(c.Nodes, n)
	}
	return nil
}

// nthSubnet is the i-th /bits subnet of p.
func nthSubnet(p netip.Prefix, bits, i int) (netip.Prefix, error) {
	p = p.Masked()
	if bits < p.Bits() || bits > p.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("/%d subnets of %s: bad mask", bits, p)
	}
	if bits-p.Bits() < 62 && i >= 1<<(bits-p.Bits()) {
		return netip.Prefix{}, fmt.Errorf("%s has fewer than %d /%d subnets", p, i+1, bits)
	}
	v := new(big.Int).SetBytes(p.Addr().AsSlice())
	v.Add(v, new(big.Int).Lsh(big.NewInt(int64(i)), uint(p.Addr().BitLen()-bits)))
	b := v.FillBytes(make([]byte, p.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, bits), nil
}

// makeBridge creates the underlay bridge, with no address and IPv6 off, so that the root
// namespace takes no part in the underlay.
func (c *Cluster) makeBridge(name string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bridge %s already exists: a cluster with prefix %q is up, or one was left behind", name, c.Config.Prefix)
		}
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	c.Bridge = name
	if err := disableIPv6(c.Bridge); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s: %w", c.Bridge, err)
	}
	return nil
}

func disableIPv6(link string) error {
	p := "/proc/sys/net/ipv6/conf/" + link + "/disable_ipv6"
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// makeNode creates the node's dirs and namespace, plugs it into the underlay with its
// addresses, and turns forwarding on in it.
func (n *Node) makeNode() error {
	for _, d := range []string{n.ConfDir, n.CacheDir, n.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\ndebug: false\n", n.Socket, n.Socket)
	if err := os.WriteFile(n.CrictlConfig, []byte(cf), 0o644); err != nil {
		return err
	}
	if _, err := netns.Create(filepath.Dir(n.NetNSPath), filepath.Base(n.NetNSPath)); err != nil {
		return err
	}
	br, err := netlink.LinkByName(n.cluster.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.cluster.Bridge, err)
	}
	nsh, err := vnetns.GetFromPath(n.NetNSPath)
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.NetNSPath, err)
	}
	defer nsh.Close()
	name := fmt.Sprintf("%s-n%d", n.cluster.Config.Prefix, n.Index)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(nsh)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	n.HostVeth = name
	if err := disableIPv6(n.HostVeth); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s: %w", n.HostVeth, err)
	}
	err = n.withHandle(func(h *netlink.Handle) error {
		for _, name := range []string{"lo", "eth0"} {
			l, err := h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
			if name == "eth0" {
				for _, ip := range n.IPs {
					under := n.underlayOf(ip)
					a := &netlink.Addr{
						IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(under.Bits(), ip.BitLen())},
						Flags: unix.IFA_F_NODAD,
					}
					if err := h.AddrAdd(l, a); err != nil {
						return fmt.Errorf("address %s: %w", a.IPNet, err)
					}
				}
			}
			if err := h.LinkSetUp(l); err != nil {
				return fmt.Errorf("link %s up: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return netns.Do(n.NetNSPath, func() error {
		for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", p, err)
			}
		}
		return nil
	})
}

// underlayOf is the underlay prefix of ip's family.
func (n *Node) underlayOf(ip netip.Addr) netip.Prefix {
	s := n.cluster.Config.UnderlayV4
	if ip.Is6() {
		s = n.cluster.Config.UnderlayV6
	}
	p, _ := netip.ParsePrefix(s)
	return p
}

// withHandle runs fn with a netlink handle inside the node's namespace.
func (n *Node) withHandle(fn func(*netlink.Handle) error) error {
	nsh, err := vnetns.GetFromPath(n.NetNSPath)
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.NetNSPath, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.NetNSPath, err)
	}
	defer h.Close()
	return fn(h)
}
