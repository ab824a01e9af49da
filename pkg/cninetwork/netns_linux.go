//go:build linux

package cninetwork

import (
	"errors"
	"fmt"
	"os"

	"github.com/cnishim/cnishim/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// checkNetNS returns nil if path is a network namespace (a bind mount of one or a
// /proc/PID/ns/net link, which statfs resolves to nsfs), os.ErrNotExist wrapped if nothing is
// there, and another error otherwise. A namespace of another kind (a mount or PID namespace) is
// refused where the kernel can tell (NS_GET_NSTYPE, Linux 4.11). Namespace files on procfs
// itself date from kernels before 3.19, which nothing we support runs, so any other file under
// /proc is refused.
func checkNetNS(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("netns %s: %w", path, os.ErrNotExist)
		}
		return fmt.Errorf("netns %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("netns %s: not a network namespace", path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	_ = unix.Close(fd)
	if err == nil && kind != unix.CLONE_NEWNET {
		return fmt.Errorf("netns %s: not a network namespace (a namespace of another kind)", path)
	}
	return nil
}

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
