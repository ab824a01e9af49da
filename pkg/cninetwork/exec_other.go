//go:build !linux

package cninetwork

import (
	"context"
	"os"
)

// pluginProc is a running plugin. Off Linux it shares cnishim's process group, and only the
// plugin itself is killed at its deadline.
type pluginProc struct {
	p     *os.Process
	done  chan struct{} // closed once the plugin is reaped
	state *os.ProcessState
	err   error
}

// startPlugin starts the plugin at path with the environment env and files as its stdin,
// stdout and stderr.
func startPlugin(path string, env []string, files []*os.File) (*pluginProc, error) {
	p, err := os.StartProcess(path, []string{path}, &os.ProcAttr{Env: env, Files: files})
	if err != nil {
		return nil, err
	}
	pp := &pluginProc{p: p, done: make(chan struct{})}
	go func() {
		pp.state, pp.err = p.Wait()
		close(pp.done)
	}()
	return pp, nil
}

func (pp *pluginProc) pid() int { return pp.p.Pid }

// awaitExit returns nil once the plugin has exited, or ctx's error if ctx ends first.
func (pp *pluginProc) awaitExit(ctx context.Context) error {
	select {
	case <-pp.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// killGroup kills the plugin.
func (pp *pluginProc) killGroup() { _ = pp.p.Kill() }

// reap returns the plugin's exit state.
func (pp *pluginProc) reap() (*os.ProcessState, error) {
	<-pp.done
	return pp.state, pp.err
}
