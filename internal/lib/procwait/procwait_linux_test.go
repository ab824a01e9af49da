//go:build linux

package procwait

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAwaitExitContext: AwaitExitContext returns ctx's error while the child runs and nil once
// it exited, and never reaps it: its process group can still be signalled, and Wait still
// returns its status.
func TestAwaitExitContext(t *testing.T) {
	c := exec.Command("sleep", "30")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := AwaitExitContext(ctx, c.Process); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitExitContext of a running child = %v; want the deadline's error", err)
	}
	if err := syscall.Kill(-c.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the child's group: %v", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := AwaitExitContext(ctx, c.Process); err != nil {
		t.Fatalf("AwaitExitContext of a killed child = %v", err)
	}
	// Not reaped: the group is still there, with its zombie leader.
	if err := syscall.Kill(-c.Process.Pid, 0); err != nil {
		t.Errorf("the exited child's group is gone before Wait: %v", err)
	}
	err := c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Wait = %v; want the child killed by SIGKILL", err)
	}
	if err := c.Process.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("after Wait the child is %v; want done", err)
	}
}

// A poll of the pidfd interrupted by a signal, which the Go runtime's preemption signal makes
// common on a busy machine, is not an exit: AwaitExitContext keeps waiting for a child that
// still runs, and returns once it exits.
func TestAwaitExitContextInterruptedPoll(t *testing.T) {
	interrupted := 0
	poll = func(fds []unix.PollFd, timeout int) (int, error) {
		if interrupted < 50 {
			interrupted++
			return 0, unix.EINTR
		}
		return unix.Poll(fds, timeout)
	}
	t.Cleanup(func() { poll = unix.Poll })
	c := startSleeper(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := AwaitExitContext(ctx, c.Process); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitExitContext of a running child with interrupted polls = %v; want the deadline's error", err)
	}
	if interrupted == 0 {
		t.Fatal("the poll was never interrupted: the test checked nothing")
	}
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := AwaitExitContext(ctx, c.Process); err != nil {
		t.Fatalf("AwaitExitContext of a killed child = %v", err)
	}
}

// A poll that fails otherwise ends the poller's wait, but a child that still runs is waited
// for in waitid: AwaitExitContext does not return before it exits.
func TestAwaitExitContextPollError(t *testing.T) {
	poll = func([]unix.PollFd, int) (int, error) { return 0, unix.EINVAL }
	t.Cleanup(func() { poll = unix.Poll })
	c := startSleeper(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := AwaitExitContext(ctx, c.Process); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitExitContext of a running child with a failing poll = %v; want the deadline's error", err)
	}
}

// startSleeper starts a child that sleeps for 30 s, killed and reaped at the test's end.
func startSleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	return c
}
