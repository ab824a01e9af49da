//go:build linux

package cninetwork

import (
	"fmt"
	"net"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// loopbackUp sets the lo interface up inside the network namespace at path, in process, on a
// locked OS thread that leaves the namespace before any other goroutine can run on it.
func loopbackUp(path string) error {
	err := netns.Do(path, func() error {
		if err := setLinkUp("lo"); err != nil {
			return fmt.Errorf("netns %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	return nil
}

func setLinkUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// replaceDefaultRoutes makes, inside the network namespace at path, each gateway the default
// route of its IP family, on interface ifName: the family's default routes of the main table
// are deleted, then one via the gateway added. The kernel refuses a gateway ifName cannot
// reach directly.
func replaceDefaultRoutes(path, ifName string, gateways []net.IP) error {
	return netns.Do(path, func() error {
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("netns %s: find %s: %w", path, ifName, err)
		}
		for _, gw := range gateways {
			fam, dst := netlink.FAMILY_V6, &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			if gw.To4() != nil {
				fam, dst = netlink.FAMILY_V4, &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			}
			routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return fmt.Errorf("netns %s: list routes: %w", path, err)
			}
			for _, r := range routes {
				if r.Dst != nil {
					if ones, _ := r.Dst.Mask.Size(); ones != 0 {
						continue
					}
				}
				if err := netlink.RouteDel(&r); err != nil {
					return fmt.Errorf("netns %s: delete default route %s: %w", path, r, err)
				}
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw, Table: unix.RT_TABLE_MAIN}); err != nil {
				return fmt.Errorf("netns %s: add default route via %s dev %s: %w", path, gw, ifName, err)
			}
		}
		return nil
	})
}
