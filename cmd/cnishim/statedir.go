//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// lockFileName is the file in a state dir whose lock marks the dir as in use.
const lockFileName = "lock"

// networkRecordsDir is where, in a state dir, the network plugin records what it attached.
func networkRecordsDir(stateDir string) string { return filepath.Join(stateDir, "network") }

// stateHolder is what a lock file says of the process holding it.
type stateHolder struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
	Listen  string `json:"listen,omitempty"`
}

func (h stateHolder) String() string {
	s := fmt.Sprintf("%s (pid %d", h.Command, h.PID)
	if h.Listen != "" {
		s += ", listening on " + h.Listen
	}
	return s + ")"
}

// lockStateDir takes the exclusive lock of the state dir dir for the life of the process, so
// that two processes never reload, recover or collect the same records. The kernel releases it
// when the process ends, however it ends. A dir held by another process is an error naming it,
// and nothing is created; a missing dir is created mode 0700. Call release to unlock early.
func lockStateDir(dir string, me stateHolder) (release func(), err error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state dir lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir lock %s: %w", path, err)
		}
		holder := "another process"
		var h stateHolder
		if data, rerr := os.ReadFile(path); rerr == nil && json.Unmarshal(data, &h) == nil && h.PID > 0 {
			holder = h.String()
		}
		return nil, fmt.Errorf("state dir %s is in use by %s: one process per state dir (stop it, or give this one another --state-dir)", dir, holder)
	}
	data, err := json.Marshal(me)
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt(append(data, '\n'), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

// absPaths makes each path absolute, in place; a comma-separated list has each item made
// absolute. A relative path would reach plugins as a relative CNI_NETNS, and mean another
// directory to every process started elsewhere.
func absPaths(lists ...*string) error {
	for _, l := range lists {
		items := splitList(*l)
		for i, item := range items {
			abs, err := filepath.Abs(item)
			if err != nil {
				return fmt.Errorf("%w: path %q: %v", errUsage, item, err)
			}
			items[i] = abs
		}
		*l = strings.Join(items, ",")
	}
	return nil
}
