//go:build linux

package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnishim/cnishim/internal/lib/netns"
)

// Down tears the cluster down and leaves nothing of it: it removes every pod through the
// servers still running (so the plugins' DEL runs), stops the servers and the network's
// daemons (flanneld, etcd), unmounts every mount
// under the work dir (node and pod namespaces), deletes the underlay links and removes the
// files Up made (all but the logs with Config.KeepLogs; the work dir too if Up created it).
// It carries on past errors and returns them all; a second Down does no harm. The cluster
// cannot be used after Down.
func (c *Cluster) Down(ctx context.Context) error {
	c.mu.Lock()
	c.down = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.RemovePods(ctx))
	}
	for _, n := range c.Nodes {
		errs = append(errs, n.StopServer())
	}
	errs = append(errs, c.stopDaemons())
	for _, n := range c.Nodes {
		errs = append(errs, deleteLink(n.HostVeth))
	}
	errs = append(errs, unmountUnder(c.Config.WorkDir))
	for _, n := range c.Nodes {
		errs = append(errs, netns.Remove(n.NetNSPath))
	}
	errs = append(errs, deleteLink(c.Bridge))
	errs = append(errs, c.removeFiles())
	return errors.Join(errs...)
}

func deleteLink(name string) error {
	if name == "" {
		return nil // never made
	}
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	// A veth goes by itself when its peer's namespace does.
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// Mounts lists the mount points at or under dir, deepest first.
func Mounts(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	mounts, err := Mounts(dir)
	if err != nil {
		return fmt.Errorf("mounts under %s: %w", dir, err)
	}
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// removeFiles removes what Up wrote under the work dir, but the logs if KeepLogs.
func (c *Cluster) removeFiles() error {
	var errs []error
	for _, n := range c.Nodes {
		if !c.Config.KeepLogs {
			errs = append(errs, os.RemoveAll(n.Dir))
			continue
		}
		entries, err := os.ReadDir(n.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, e := range entries {
			if p := filepath.Join(n.Dir, e.Name()); p != n.Log {
				errs = append(errs, os.RemoveAll(p))
			}
		}
	}
	errs = append(errs, os.RemoveAll(filepath.Join(c.Config.WorkDir, "netns")))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove files of the cluster: %w", err)
	}
	if err := os.Remove(c.StateFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if c.createdWorkDir && !c.Config.KeepLogs {
		if err := os.Remove(c.Config.WorkDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
