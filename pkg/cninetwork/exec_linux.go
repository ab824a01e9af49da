//go:build linux

package cninetwork

import (
	"context"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cnishim/cnishim/internal/lib/procwait"
)

// pluginProc is a running plugin, the leader of a process group of its own.
type pluginProc struct {
	p *os.Process
	// pidfd refers to the plugin from its start, whoever reaps it, or is -1 when the kernel
	// has no pidfds (before Linux 5.3).
	pidfd int
}

// startPlugin starts the plugin at path with the environment env and files as its stdin,
// stdout and stderr, in a new process group: signals to cnishim's group do not reach it, and
// killGroup reaches whatever it starts.
func startPlugin(path string, env []string, files []*os.File) (*pluginProc, error) {
	p, err := os.StartProcess(path, []string{path}, &os.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return nil, err
	}
	// Opened before anything can reap the plugin, so it can never name another process.
	fd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		fd = -1
	}
	return &pluginProc{p: p, pidfd: fd}, nil
}

func (pp *pluginProc) pid() int { return pp.p.Pid }

// awaitExit returns nil once the plugin has exited, without reaping it, or ctx's error if
// ctx ends first. It waits in the runtime's network poller.
func (pp *pluginProc) awaitExit(ctx context.Context) error {
	return procwait.AwaitExitContext(ctx, pp.p)
}

// killGroup sends SIGKILL to every process of the plugin's group. Called only before reap. It
// signals through the plugin's pidfd (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9 and later), which
// can only ever name the plugin's group, even if something else in the process reaped the
// plugin; on older kernels, by the plugin's PID, which names its group until the plugin is
// reaped.
func (pp *pluginProc) killGroup() {
	if pp.pidfd >= 0 {
		err := unix.PidfdSendSignal(pp.pidfd, unix.SIGKILL, nil, unix.PIDFD_SIGNAL_PROCESS_GROUP)
		if err == nil || err == unix.ESRCH {
			return
		}
		// EINVAL: a kernel without PIDFD_SIGNAL_PROCESS_GROUP.
	}
	_ = unix.Kill(-pp.p.Pid, unix.SIGKILL)
}

// reap waits for the plugin's exit, returns its state, and closes the pidfd.
func (pp *pluginProc) reap() (*os.ProcessState, error) {
	if pp.pidfd >= 0 {
		_ = unix.Close(pp.pidfd)
		pp.pidfd = -1
	}
	return pp.p.Wait()
}
