//go:build linux

// Package netns creates and removes persistent network namespaces: a new namespace is
// bind-mounted on a file, so it outlives the thread that made it, as `ip netns add` does.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

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

	// Unshare on a locked OS thread, bind-mount the new namespace, and switch the thread back
	// before unlocking it, so no other goroutine ever runs in the new namespace. Only a thread
	// that cannot switch back is thrown away (its goroutine exits still locked): Go cannot end
	// the process's main thread, it parks it for good, and a thread parked in the namespace
	// would keep it alive after Remove.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		orig, oerr := os.Open("/proc/thread-self/ns/net")
		if oerr != nil {
			runtime.UnlockOSThread()
			err = fmt.Errorf("netns %s: current namespace: %w", path, oerr)
			return
		}
		defer orig.Close()
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			err = fmt.Errorf("netns %s: unshare: %w", path, err)
			return
		}
		if err = unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			err = fmt.Errorf("netns %s: bind mount: %w", path, err)
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = errors.Join(err, fmt.Errorf("netns %s: switch back: %w", path, serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	wg.Wait()
	if err != nil {
		return "", err
	}
	return path, nil
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

// IsNetNS reports whether path is a network namespace (a bind mount of one, or an nsfs file).
func IsNetNS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("netns %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
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
