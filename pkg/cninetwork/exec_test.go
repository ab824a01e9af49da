package cninetwork

import (
	"context"
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
