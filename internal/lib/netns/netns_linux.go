//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Create makes a new network namespace bind-mounted at dir/name and returns that path. dir is
// created (mode 0700) if missing. On error nothing is left behind.
func Create(dir, name string) (path string, retErr error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", fmt.Errorf("netns name %q: must be a plain file name", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("netns dir %s: %w", dir, err)
	}
	path = filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return "", fmt.Errorf("netns %s: %w", path, err)
	}
	_ = f.Close()
	defer func() {
		if retErr != nil {
			_ = os.Remove(path)
		}
	}()

	// The bind mount must be made from a thread inside the new namespace.
	err = onThread(path,
		func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("netns %s: unshare: %w", path, err)
			}
			return nil
		},
		func() error {
			if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("netns %s: bind mount: %w", path, err)
			}
			return nil
		})
	if err != nil {
		return "", err
	}
	return path, nil
}

// Do runs fn on a locked OS thread inside the network namespace at path (a bind mount or an
// nsfs file) and returns its error. fn must do its namespace-bound work (creating sockets,
// netlink calls) itself: goroutines it starts run in the caller's namespace. Do blocks until fn
// returns.
func Do(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer f.Close()
	return onThread(path, func() error {
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns %s: setns: %w", path, err)
		}
		return nil
	}, fn)
}

// onThread runs enter and then fn on a locked OS thread of their own, and switches the thread
// back to the network namespace it started in before unlocking it, so no other goroutine ever
// runs in the namespace enter moved it to. Only a thread that cannot switch back is thrown away
// (its goroutine exits still locked): Go cannot end the process's main thread, it parks it for
// good, and a thread parked in a namespace would keep that namespace alive after it is removed.
// fn does not run if enter fails. path names the namespace in errors.
func onThread(path string, enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: current namespace: %w", path, err)
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			// A failed unshare or setns leaves the thread where it was.
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("netns %s: switch back: %w", path, serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// Remove unmounts and removes a namespace made by Create. A path that is already gone, or not
// mounted, is not an error.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// IsNetNS reports whether path is a network namespace: a bind mount of one or a
// /proc/PID/ns/net link, which statfs resolves to nsfs. When it is not, the error says why:
// it wraps os.ErrNotExist if nothing is there, and says "not a network namespace" for another
// file or a namespace of another kind (a mount or PID namespace), which is refused where the
// kernel can tell (NS_GET_NSTYPE, Linux 4.11). Namespace files on procfs itself date from
// kernels before 3.19, which nothing we support runs, so any other file under /proc is refused.
func IsNetNS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("netns %s: %w", path, os.ErrNotExist)
		}
		return false, fmt.Errorf("netns %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return false, fmt.Errorf("netns %s: not a network namespace", path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("netns %s: %w", path, err)
	}
	kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	_ = unix.Close(fd)
	if err == nil && kind != unix.CLONE_NEWNET {
		return false, fmt.Errorf("netns %s: not a network namespace (a namespace of another kind)", path)
	}
	return true, nil
}

// Mounted lists the paths under dir that are network namespace mounts, for leak checks.
func Mounted(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if ok, _ := IsNetNS(p); ok {
			out = append(out, p)
		}
	}
	return out, nil
}
