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
	"strings"
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
