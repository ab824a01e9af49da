//go:build linux

package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a child started in its own process group, identified across processes by its PID
// and its start time (so a reused PID is never signalled).
type process struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`

	done chan struct{} // closed once reaped; nil if another process started it
}

// startProcess starts cmd in a process group of its own.
func startProcess(cmd *exec.Cmd) (*process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{PID: cmd.Process.Pid, done: make(chan struct{})}
	p.StartTime, _ = startTime(p.PID)
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startTime is field 22 of /proc/<pid>/stat, and whether the process is a zombie.
func startTime(pid int) (uint64, error) {
	st, zombie, err := procStat(pid)
	if err == nil && zombie {
		err = errors.New("zombie")
	}
	return st, err
}

func procStat(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z", err
}

// alive reports whether p still runs (a zombie does not).
func (p *process) alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	st, err := startTime(p.PID)
	return err == nil && st == p.StartTime
}

// signal sends sig to p alone, or to its whole group.
func (p *process) signal(sig syscall.Signal, group bool) error {
	if !p.alive() {
		return nil
	}
	pid := p.PID
	if group {
		pid = -pid
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// wait waits until p has exited or ctx is done: until it is reaped if this process started
// it, else until it is gone or a zombie.
func (p *process) wait(ctx context.Context) error {
	if p.done != nil {
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("pid %d did not exit: %w", p.PID, ctx.Err())
		}
	}
	for p.alive() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pid %d did not exit: %w", p.PID, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// stop sends SIGTERM to p, and SIGKILL to its group if it has not exited within grace; it
// returns once p has exited. A group left after p exited (its plugins) is killed too.
func (p *process) stop(grace time.Duration) error {
	if err := p.signal(syscall.SIGTERM, false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if p.wait(ctx) == nil {
		_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		return nil
	}
	return p.kill()
}

// kill sends SIGKILL to p's group and waits until p has exited.
func (p *process) kill() error {
	if err := p.signal(syscall.SIGKILL, true); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return p.wait(ctx)
}
