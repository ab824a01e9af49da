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
