//go:build linux

package framework

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// daemon is the running process of a long-lived server a test starts, kills and starts again:
// containerd, a kubelet. The zero daemon has none.
type daemon struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// started records cmd, just started, as the process and reaps it when it exits; the channel
// closes then.
func (d *daemon) started(cmd *exec.Cmd) <-chan struct{} {
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.mu.Unlock()
	return exited
}

// process returns the running process, or nil.
func (d *daemon) process() *exec.Cmd {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd
}

// kill sends sig to the process and waits for it to exit, killing it after 30 s (an error
// then); without a process it does nothing. The daemon has no process after.
func (d *daemon) kill(sig syscall.Signal) error {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("did not exit on %v in 30 s", sig)
	}
}

// exitedByItself reports whether the process exited without kill.
func (d *daemon) exitedByItself() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// forget drops a process that exited by itself, so that the daemon has none.
func (d *daemon) forget() {
	if d.exitedByItself() {
		d.mu.Lock()
		d.cmd = nil
		d.mu.Unlock()
	}
}
