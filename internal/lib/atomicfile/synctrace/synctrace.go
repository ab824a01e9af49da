// Package synctrace reports the fsyncs package atomicfile makes to whoever asked to see them:
// the tests of the stores built on atomicfile, which check that a write or a removal reaches
// the disk (the file's data synced before its rename, the directory synced after it) without
// a power cut to prove it. Nothing but tests calls Watch; with no watcher, Report costs one
// atomic load.
package synctrace

import (
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Sync is one fsync that succeeded.
type Sync struct {
	// Path is the file or directory synced.
	Path string
	// Dir is true for a directory.
	Dir bool
}

var (
	count atomic.Int32 // len(watchers), read without mu by Report
	// mu guards watchers and next.
	mu       sync.Mutex
	watchers = map[int]watcher{}
	next     int
)

type watcher struct {
	dir string
	f   func(Sync)
}

// Watch calls f with every later sync of dir or of a file directly in dir, until stop is
// called. f runs on the goroutine that made the sync, right after it and before the call that
// made it goes on, so f sees the disk as the sync left it; f must be safe for concurrent use
// and must not call Watch or stop. Watchers of other directories do not see these syncs, so
// tests that run in parallel each watch their own.
func Watch(dir string, f func(Sync)) (stop func()) {
	dir = filepath.Clean(dir)
	mu.Lock()
	defer mu.Unlock()
	id := next
	next++
	watchers[id] = watcher{dir: dir, f: f}
	count.Add(1)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := watchers[id]; ok {
			delete(watchers, id)
			count.Add(-1)
		}
	}
}

// Report passes s to the watchers of its directory. Package atomicfile calls it after each
// fsync that succeeded.
func Report(s Sync) {
	if count.Load() == 0 {
		return
	}
	dir := filepath.Dir(s.Path)
	if s.Dir {
		dir = s.Path
	}
	dir = filepath.Clean(dir)
	var fs []func(Sync)
	mu.Lock()
	for _, w := range watchers {
		if w.dir == dir {
			fs = append(fs, w.f)
		}
	}
	mu.Unlock()
	for _, f := range fs {
		f(s)
	}
}
