package cninetwork

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestPluginExecTrace(t *testing.T) {
	fe := newFakeExec()
	e := &pluginExec{inner: fe}
	ctx, tr := withTrace(t.Context())
	if tr.plugin() != "" {
		t.Fatal("new trace names a plugin")
	}
	if _, err := e.ExecPlugin(ctx, "/opt/cni/bin/portmap", []byte(`{}`), []string{"CNI_COMMAND=DEL"}); err != nil {
		t.Fatal(err)
	}
	if got := tr.plugin(); got != "portmap" {
		t.Fatalf("trace = %q; want portmap", got)
	}
	// Without a trace in the context nothing breaks.
	if _, err := e.ExecPlugin(context.WithoutCancel(t.Context()), "/x/bridge", []byte(`{}`), []string{"CNI_COMMAND=DEL"}); err != nil {
		t.Fatal(err)
	}
}

// writeScript writes an executable shell script to dir and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProcessExec: the default executor returns what a plugin prints, reports the CPU time of
// the plugin and of what it waited for, and turns a failure into the CNI error libcni would.
func TestProcessExec(t *testing.T) {
	dir := t.TempDir()
	// The CPU is burnt by a child the plugin waits for, as host-local under bridge.
	busy := writeScript(t, dir, "busy", `sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'; echo '{"cniVersion":"1.0.0"}'`)
	cniErr := writeScript(t, dir, "cnierr", `echo '{"cniVersion":"1.0.0","code":11,"msg":"try again"}'; exit 1`)
	stderrOnly := writeScript(t, dir, "stderronly", `echo 'no such thing' >&2; exit 3`)
	procs := &procSet{}
	e := &pluginExec{inner: newDefaultExec(procs)}

	ctx, m := withCPUMeter(t.Context())
	out, err := e.ExecPlugin(ctx, busy, []byte(`{}`), []string{"CNI_COMMAND=ADD"})
	if err != nil || string(out) != `{"cniVersion":"1.0.0"}`+"\n" {
		t.Fatalf("ExecPlugin(busy) = %q, %v", out, err)
	}
	cpu, known := m.total()
	if !known || cpu <= 0 {
		t.Errorf("CPU of a plugin whose child burnt CPU = %s, known %v; want > 0, true", cpu, known)
	}
	if pids := procs.list(); len(pids) != 0 {
		t.Errorf("processes still listed after their plugin ended: %v", pids)
	}

	for _, tc := range []struct {
		path string
		code uint
		msg  string
	}{
		{cniErr, 11, "try again"},
		{stderrOnly, 0, `netplugin failed: "no such thing\n": exit status 3`},
	} {
		_, err := e.ExecPlugin(t.Context(), tc.path, []byte(`{}`), []string{"CNI_COMMAND=ADD"})
		var ce *types.Error
		if !errors.As(err, &ce) || ce.Code != tc.code || ce.Msg != tc.msg {
			t.Errorf("ExecPlugin(%s) = %v; want CNI error %d %q", filepath.Base(tc.path), err, tc.code, tc.msg)
		}
	}

	// An executor that reports no CPU time leaves the meter's total unknown.
	ctx, m = withCPUMeter(t.Context())
	if _, err := (&pluginExec{inner: newFakeExec()}).ExecPlugin(ctx, "/x/bridge", []byte(`{}`), []string{"CNI_COMMAND=DEL"}); err != nil {
		t.Fatal(err)
	}
	if _, known := m.total(); known {
		t.Error("a fake executor's CPU time is known")
	}
}
