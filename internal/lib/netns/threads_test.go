//go:build linux

package netns_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/testing/roottest"
)

// TestNoThreadStaysInANamespace creates namespaces and runs code in them many times, and checks
// after each that no thread of this process is left inside: a thread left there would keep the
// namespace (and whatever is in it) alive after it is removed. Go parks rather than ends the
// main thread when a locked goroutine exits on it, so a throw-away-thread design fails this
// whenever the runtime happens to schedule the goroutine on the main thread.
func TestNoThreadStaysInANamespace(t *testing.T) {
	roottest.Require(t)
	home, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Several goroutines at once, so that over the rounds the runtime schedules some of the
	// namespace work on the main thread.
	const workers, rounds = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := createRunRemove(filepath.Join(dir), fmt.Sprintf("ns%d-%d", w, i)); err != nil {
					errs <- fmt.Errorf("round %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A thread being ended still shows in /proc until the kernel reaps it, which follows its
	// exit at once; a parked one stays for good. Wait for the first to go, and fail on what is
	// still there when the hang guard ends the wait.
	deadline := time.Now().Add(30 * time.Second)
	for away := threadsOutside(t, home); len(away) > 0; away = threadsOutside(t, home) {
		if time.Now().After(deadline) {
			t.Fatalf("threads left outside the test's namespace %s: %v", home, away)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadsOutside lists this process's threads whose network namespace is not home.
func threadsOutside(t *testing.T, home string) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var away []string
	for _, task := range tasks {
		if got, err := os.Readlink(task); err == nil && got != home {
			away = append(away, filepath.Base(filepath.Dir(filepath.Dir(task)))+" in "+got)
		}
	}
	return away
}

// createRunRemove creates a namespace, runs nothing in it, and removes it; it fails if a thread
// of this process is inside the namespace before it is removed.
func createRunRemove(dir, name string) error {
	path, err := netns.Create(dir, name)
	if err != nil {
		return err
	}
	defer netns.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := netns.Do(path, func() error { return nil }); err != nil {
		return err
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return err
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		return err
	}
	for _, task := range tasks {
		if got, err := os.Readlink(task); err == nil && got == ns {
			return fmt.Errorf("thread %s is still inside namespace %s (%s)", filepath.Base(filepath.Dir(filepath.Dir(task))), path, ns)
		}
	}
	return nil
}
