//go:build linux

package cninetwork

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// helperEnv makes the test binary a fake plugin: its value says what the plugin does (see
// runHelperPlugin).
const helperEnv = "CNISHIM_TEST_HELPER_PLUGIN"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelperPlugin(mode))
	}
	os.Exit(m.Run())
}

// runHelperPlugin is the fake plugin: "echo" writes its stdin to stdout; "cni-error" fails
// with a CNI error on stdout; "stderr" fails with a message on stderr; "silent" fails saying
// nothing; "wait:FILE" echoes its stdin once FILE exists.
func runHelperPlugin(mode string) int {
	in, _ := io.ReadAll(os.Stdin)
	switch {
	case mode == "echo":
		os.Stdout.Write(in)
		return 0
	case mode == "cni-error":
		fmt.Print(`{"cniVersion":"1.0.0","code":7,"msg":"no address left","details":"range full"}`)
		return 1
	case mode == "stderr":
		fmt.Fprint(os.Stderr, "bridge cni0 is gone")
		return 2
	case mode == "silent":
		return 3
	case strings.HasPrefix(mode, "wait:"):
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(strings.TrimPrefix(mode, "wait:")); err == nil {
				os.Stdout.Write(in)
				return 0
			}
			if time.Now().After(deadline) {
				return 4
			}
		}
	}
	return 5
}

// TestProcessExecResults: the default executor returns what a plugin writes to stdout and its errors in
// libcni's form.
func TestProcessExecResults(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, mode, path string
		wantOut          string
		wantCode         uint   // of the *types.Error; 0 for none
		wantErr          string // substring of the error; "" means success
	}{
		{name: "result", mode: "echo", wantOut: `{"cniVersion":"1.0.0"}`},
		{name: "CNI error", mode: "cni-error", wantCode: 7, wantErr: "no address left; range full"},
		{name: "stderr", mode: "stderr", wantErr: `netplugin failed: "bridge cni0 is gone": exit status 2`},
		{name: "nothing said", mode: "silent", wantErr: "netplugin failed with no error message: exit status 3"},
		{name: "no binary", mode: "echo", path: filepath.Join(t.TempDir(), "bridge"), wantErr: "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := self
			if tt.path != "" {
				path = tt.path
			}
			out, err := (&processExec{}).ExecPlugin(t.Context(), path, []byte(`{"cniVersion":"1.0.0"}`), []string{helperEnv + "=" + tt.mode})
			if tt.wantErr == "" {
				if err != nil || string(out) != tt.wantOut {
					t.Fatalf("ExecPlugin = %q, %v; want %q", out, err, tt.wantOut)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ExecPlugin error = %v; want one saying %q", err, tt.wantErr)
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != tt.wantCode {
				t.Fatalf("ExecPlugin error = %#v; want a *types.Error with code %d", err, tt.wantCode)
			}
		})
	}
}

// TestProcessExecWaitsInPoller: while a plugin runs, the goroutine that ran it waits in the
// network poller (it gave up its P) rather than in a blocking waitid; once the plugin ends,
// its result comes back.
func TestProcessExecWaitsInPoller(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	release := filepath.Join(t.TempDir(), "release")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a hang guard
	defer cancel()
	type answer struct {
		out []byte
		err error
	}
	done := make(chan answer, 1)
	go func() {
		out, err := (&processExec{}).ExecPlugin(ctx, self, []byte("result"), []string{helperEnv + "=wait:" + release})
		done <- answer{out, err}
	}()

	buf := make([]byte, 1<<20)
	for {
		if ctx.Err() != nil {
			t.Fatalf("no goroutine waits for the plugin in the poller:\n%s", buf)
		}
		buf = buf[:runtime.Stack(buf[:cap(buf)], true)]
		var waiting bool
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("os.(*Process).pidfdWait")) || bytes.Contains(g, []byte("os.(*Process).blockUntilWaitable")) {
				t.Fatalf("a goroutine waits for the running plugin in a blocking waitid:\n%s", g)
			}
			if bytes.Contains(g, []byte("procwait.AwaitExit")) && bytes.Contains(g, []byte("[IO wait")) {
				waiting = true
			}
		}
		if waiting {
			break
		}
		select {
		case a := <-done:
			t.Fatalf("ExecPlugin returned before the plugin was released: %q, %v", a.out, a.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if a := <-done; a.err != nil || string(a.out) != "result" {
		t.Fatalf("ExecPlugin = %q, %v; want the plugin's result", a.out, a.err)
	}
}

// execBound is how long a test lets an ExecPlugin that must not wait for a process left
// behind take: many times outputGrace, for a busy machine, and far below the 30 s such a
// process lives.
const execBound = 5 * time.Second

// readPID reads the process ID a test plugin wrote to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// processGone reports whether process pid has exited: it is not there, or it is a zombie its
// new parent has not reaped yet.
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// checkGone fails the test unless each process exits within execBound.
func checkGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(execBound)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Errorf("%s (process %d) still runs", what, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestProcessExecHelperHoldsOutput: a plugin that leaves a helper holding its stdin, stdout and
// stderr does not hold the call past outputGrace once it exits; its result is used if it exited
// 0; the helper is killed, whether the plugin exited or was killed at its deadline.
func TestProcessExecHelperHoldsOutput(t *testing.T) {
	for _, tt := range []struct {
		name    string
		then    string // what the plugin does once the helper runs
		timeout time.Duration
		wantOut string
		wantErr string
	}{
		{name: "plugin exits 0", then: `echo '{"cniVersion":"1.0.0"}'`, wantOut: `{"cniVersion":"1.0.0"}` + "\n"},
		{name: "plugin past its deadline", then: "sleep 30", timeout: time.Second, wantErr: "netplugin failed with no error message: signal: killed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			helperPID := filepath.Join(dir, "helper.pid")
			// The helper holds all three: stdin (of which the plugin read nothing), stdout and
			// stderr.
			plugin := writeScript(t, dir, "bridge", fmt.Sprintf("sleep 30 <&0 &\necho $! > %q\n%s\n", helperPID, tt.then))
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			// More stdin than a pipe holds: the write blocks until it is unblocked.
			stdin := bytes.Repeat([]byte(" "), 1<<20)
			start := time.Now()
			out, err := (&processExec{}).ExecPlugin(ctx, plugin, stdin, nil)
			took := time.Since(start)
			t.Logf("ExecPlugin took %s", took)
			if took > tt.timeout+execBound {
				t.Errorf("ExecPlugin took %s; want its deadline (%s, if any) and the grace (%s) at most, not the helper's 30 s", took, tt.timeout, outputGrace)
			}
			if tt.wantErr == "" {
				if err != nil || string(out) != tt.wantOut {
					t.Errorf("ExecPlugin = %q, %v; want %q", out, err, tt.wantOut)
				}
			} else {
				var te *types.Error
				if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ExecPlugin error = %#v; want a *types.Error saying %q", err, tt.wantErr)
				}
				if ctx.Err() == nil {
					t.Error("the plugin failed before its deadline")
				}
			}
			checkGone(t, "the helper", readPID(t, helperPID))
		})
	}
}

// TestProcessExecKillsGroupAtDeadline: at its deadline the plugin is killed with everything it
// started in its process group, even a child that let go of the plugin's stdout and stderr
// and would have written a file 2 s later.
func TestProcessExecKillsGroupAtDeadline(t *testing.T) {
	dir := t.TempDir()
	pluginPID, childPID, mark := filepath.Join(dir, "plugin.pid"), filepath.Join(dir, "child.pid"), filepath.Join(dir, "mark")
	plugin := writeScript(t, dir, "bridge", fmt.Sprintf(`echo $$ > %q
(sleep 2; touch %q) </dev/null >/dev/null 2>&1 &
echo $! > %q
sleep 30
`, pluginPID, mark, childPID))
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := (&processExec{}).ExecPlugin(ctx, plugin, []byte(`{}`), nil)
	if took := time.Since(start); took > time.Second+execBound {
		t.Errorf("ExecPlugin took %s; want about its 1 s deadline", took)
	}
	var te *types.Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("ExecPlugin error = %#v; want a *types.Error saying the plugin was killed", err)
	}
	checkGone(t, "the plugin", readPID(t, pluginPID))
	checkGone(t, "the plugin's child", readPID(t, childPID))
	// Past the moment the child would have written the file.
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	if _, err := os.Stat(mark); err == nil {
		t.Error("the plugin's child outlived the plugin's deadline: it wrote its file")
	}
}

// TestProcessExecOutputCaps: a plugin that floods stdout is killed with a clear error; one
// that floods stderr has the start of it in its error; the executor never holds more than the
// caps.
func TestProcessExecOutputCaps(t *testing.T) {
	const flood = 100 << 20
	for _, tt := range []struct {
		name, body string
		wantErr    string
	}{
		{
			name:    "stdout",
			body:    fmt.Sprintf("echo $$ > \"$PIDFILE\"\nhead -c %d /dev/zero\n", flood),
			wantErr: `plugin "flood": wrote more than 4 MiB to stdout`,
		},
		{
			name:    "stderr",
			body:    fmt.Sprintf("echo $$ > \"$PIDFILE\"\nyes | head -c %d >&2\nexit 2\n", flood),
			wantErr: fmt.Sprintf("(the first 64 KiB of its stderr; %d more bytes dropped): exit status 2", flood-maxStderr),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "plugin.pid")
			plugin := writeScript(t, dir, "flood", tt.body)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			out, err := (&processExec{}).ExecPlugin(t.Context(), plugin, []byte(`{}`), []string{"PIDFILE=" + pidFile})
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			var te *types.Error
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantErr) {
				msg := fmt.Sprint(err)
				t.Errorf("ExecPlugin = %d bytes, error %.300s; want a *types.Error saying %q", len(out), msg, tt.wantErr)
			}
			// The caps' buffers grow by doubling: twice the cap, and the copies of the error.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("ExecPlugin allocated %d MiB for a plugin's %d MiB of output; want the cap's few MiB", alloc>>20, flood>>20)
			}
			t.Logf("ExecPlugin took %s, allocated %d KiB", took, (after.TotalAlloc-before.TotalAlloc)>>10)
			checkGone(t, "the plugin", readPID(t, pidFile))
		})
	}
}

// TestProcessExecOwnGroup: a plugin runs in a process group of its own, so that signals to
// cnishim's group (a Ctrl-C at a terminal) do not reach it.
func TestProcessExecOwnGroup(t *testing.T) {
	// Field 5 of /proc/PID/stat is the process group; the script's name has no space.
	plugin := writeScript(t, t.TempDir(), "pgid", "echo $$ $(cut -d' ' -f5 /proc/$$/stat)\n")
	out, err := (&processExec{}).ExecPlugin(t.Context(), plugin, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pid, pgid int
	if _, err := fmt.Sscan(string(out), &pid, &pgid); err != nil {
		t.Fatalf("plugin printed %q: %v", out, err)
	}
	if pgid == syscall.Getpgrp() || pgid != pid {
		t.Errorf("plugin %d ran in process group %d; want its own (%d), not the caller's (%d)", pid, pgid, pid, syscall.Getpgrp())
	}
}
