//go:build linux

package cninetwork

import (
	"fmt"

	"github.com/cnishim/cnishim/internal/netns"
	"github.com/vishvananda/netlink"
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
