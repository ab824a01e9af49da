//go:build linux

package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// awaitServing polls ready every poll until it holds, for at most a minute, and fails early
// when exited closes; what names the daemon in the error, which quotes the tail of its log.
func awaitServing(what, log string, exited <-chan struct{}, poll time.Duration, ready func() bool) error {
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start; log:\n%s", what, TailFile(log, 8000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not serve in 60 s; log:\n%s", what, TailFile(log, 8000))
		}
		time.Sleep(poll)
	}
	return nil
}

// TailFile returns the last n bytes of the file at path; "" when it cannot be read.
func TailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// keepLog copies the whole log at path to $CNISHIM_TEST_LOG_DIR/name, when that is set, for a
// look after the run.
func keepLog(path, name string) {
	dir := os.Getenv("CNISHIM_TEST_LOG_DIR")
	if dir == "" {
		return
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
}
