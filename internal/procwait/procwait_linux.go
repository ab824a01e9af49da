//go:build linux

// Package procwait waits for a child process to exit without holding a P of the Go runtime.
package procwait

import (
	"os"

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
	// A pidfd polls readable once its process has exited.
	_ = rc.Read(func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return err != nil || n > 0
	})
}
