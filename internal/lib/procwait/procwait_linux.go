//go:build linux

// Package procwait waits for a child process to exit without holding a P of the Go runtime.
package procwait

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// AwaitExit returns once the process p, a child not yet reaped, has exited, having waited in
// the runtime's network poller on a pidfd of it, so that the goroutine gives up its P
// meanwhile; p's Wait then reaps it at once. os/exec's Wait blocks in waitid instead, keeping
// the P until the runtime's monitor takes it back, which can be 10 ms later. AwaitExit returns
// at once if the kernel has no pidfds (before Linux 5.10); Wait then blocks as usual.
func AwaitExit(p *os.Process) {
	// Until the parent reaps it, the child's PID cannot be reused: the pidfd is p's.
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(exited)
}

// AwaitExitContext returns nil once the process p, a child not yet reaped, has exited, or
// ctx's error if ctx ends first. It never reaps p: p's Wait does, and until then p's PID, and
// the process group it leads, cannot be reused, so the caller may still signal either.
//
// It waits as AwaitExit does, in the network poller on a pidfd. Without pidfds it waits in a
// waitid(WNOWAIT) on a goroutine that stays blocked in the kernel until p exits, even after
// ctx ends: the caller that gives up on p should kill it.
func AwaitExitContext(ctx context.Context, p *os.Process) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return awaitWaitid(ctx, p.Pid)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return awaitWaitid(ctx, p.Pid)
	}
	// A deadline in the past wakes the poller's wait; after f is closed it does nothing.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(exited)
	switch {
	case err == nil && hasExited(p.Pid):
		return nil
	case err == nil:
		// poll failed: wait in waitid instead.
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return ctx.Err()
	}
	// The pidfd cannot be polled.
	return awaitWaitid(ctx, p.Pid)
}

// exited reports whether the pidfd fd polls readable, which it does once its process has
// exited. A poll interrupted by a signal (the Go runtime's preemption signal, often, on a busy
// machine) says nothing, so it is asked again: taking it for an exit would have the caller
// kill a process that is still running. Any other error of poll ends the wait, and the caller
// checks the exit with waitid.
func exited(fd uintptr) bool {
	for {
		n, err := poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

// poll is unix.Poll; a test replaces it.
var poll = unix.Poll

// hasExited reports whether the child pid has exited, without reaping it or waiting.
func hasExited(pid int) bool {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		// With WNOHANG, a child that has not exited leaves info zeroed (si_signo is SIGCHLD
		// for one that has). An error (the child reaped elsewhere) means there is nothing left
		// to wait for.
		return err != nil || info.Signo != 0
	}
}

// awaitWaitid is AwaitExitContext without a pidfd.
func awaitWaitid(ctx context.Context, pid int) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var info unix.Siginfo
		for {
			// WNOWAIT leaves the child waitable: Wait still reaps it.
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				return
			}
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
