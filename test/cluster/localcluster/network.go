//go:build linux

package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Network is a pod network: the CNI configuration every node gets and what makes pods on
// different nodes reach each other. Config.Network picks one by Name.
//
// Down needs nothing from a Network: whatever SetUp makes inside node namespaces (routes,
// devices, rules) goes with them. A Network that runs daemons must record them in the state
// file as the servers are, so that Down from another process stops them.
type Network interface {
	// Name is the Config.Network value that picks this network.
	Name() string
	// Conflist is the CNI network configuration list for node n's conf dir.
	Conflist(c *Cluster, n *Node) ([]byte, error)
	// SetUp runs once every node has its namespace, underlay addresses and dirs, before any
	// server starts.
	SetUp(ctx context.Context, c *Cluster) error
}

// networks are the known networks by name.
var networks = map[string]Network{
	kindnet{}.Name(): kindnet{},
	flannel{}.Name(): flannel{},
}

// kindnet is kind's default network: ptp + host-local (one pod subnet per node) + portmap,
// with a route on every node to each other node's pod subnet via that node's underlay address
// (what kindnetd keeps in place).
type kindnet struct{}

func (kindnet) Name() string { return "kindnet" }

// Conflist is kind's conflist for node n, with host-local's store under the node's dir.
func (kindnet) Conflist(c *Cluster, n *Node) ([]byte, error) {
	type obj = map[string]any
	var ranges, routes []any
	for _, p := range n.PodCIDRs {
		ranges = append(ranges, []any{obj{"subnet": p.String()}})
		dst := "0.0.0.0/0"
		if p.Addr().Is6() {
			dst = "::/0"
		}
		routes = append(routes, obj{"dst": dst})
	}
	conf := obj{
		"cniVersion": "0.3.1",
		"name":       "kindnet",
		"plugins": []any{
			obj{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1500,
				"ipam": obj{
					"type":    "host-local",
					"dataDir": n.Dir + "/cni-ipam-state",
					"routes":  routes,
					"ranges":  ranges,
				},
			},
			obj{"type": "portmap", "capabilities": obj{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// SetUp adds the routes kindnetd would: on every node, to each other node's pod subnets via
// that node's address of the same family.
func (kindnet) SetUp(ctx context.Context, c *Cluster) error {
	for _, n := range c.Nodes {
		err := n.withHandle(func(h *netlink.Handle) error {
			for _, m := range c.Nodes {
				if m == n {
					continue
				}
				for i, p := range m.PodCIDRs {
					gw := m.IPs[i]
					r := &netlink.Route{
						Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
						Gw:  gw.AsSlice(),
					}
					if err := h.RouteAdd(r); err != nil {
						return fmt.Errorf("route %s via %s: %w", p, gw, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}
