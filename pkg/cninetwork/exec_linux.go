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
type pluginProc struct{ p *os.Process }

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
	return &pluginProc{p: p}, nil
}

func (pp *pluginProc) pid() int { return pp.p.Pid }

// awaitExit returns nil once the plugin has exited, without reaping it, or ctx's error if
// ctx ends first. It waits in the runtime's network poller.
func (pp *pluginProc) awaitExit(ctx context.Context) error {
	return procwait.AwaitExitContext(ctx, pp.p)
}

// killGroup sends SIGKILL to every process of the plugin's group. Called only before reap:
// until the plugin is reaped, its PID, which names the group, cannot be reused.
func (pp *pluginProc) killGroup() { _ = unix.Kill(-pp.p.Pid, unix.SIGKILL) }

// reap waits for the plugin's exit and returns its state.
func (pp *pluginProc) reap() (*os.ProcessState, error) { return pp.p.Wait() }
