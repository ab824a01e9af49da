package cninetwork

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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

// TestProcessExecCPU: the default executor reports the CPU time of the plugin and of what it
// waited for, and lists a set-up's plugin only while it runs.
func TestProcessExecCPU(t *testing.T) {
	dir := t.TempDir()
	// The CPU is burnt by a child the plugin waits for, as host-local under bridge.
	busy := writeScript(t, dir, "busy", `sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'; echo '{"cniVersion":"1.0.0"}'`)
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

	// An executor that reports no CPU time leaves the meter's total unknown.
	ctx, m = withCPUMeter(t.Context())
	if _, err := (&pluginExec{inner: newFakeExec()}).ExecPlugin(ctx, "/x/bridge", []byte(`{}`), []string{"CNI_COMMAND=DEL"}); err != nil {
		t.Fatal(err)
	}
	if _, known := m.total(); known {
		t.Error("a fake executor's CPU time is known")
	}
}
