package cninetwork

import (
	"context"
	"reflect"
	"testing"
)

func TestPluginEnv(t *testing.T) {
	in := []string{"HOME=/root", "CNI_COMMAND=ADD", "AWS_SECRET_ACCESS_KEY=x", "PATH=/usr/sbin:/usr/bin", "CNI_ARGS=a=b", "PATHX=1", "MYCNI_X=1"}
	want := []string{"CNI_ARGS=a=b", "CNI_COMMAND=ADD", "PATH=/usr/sbin:/usr/bin"}
	if got := pluginEnv(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("pluginEnv = %v; want %v", got, want)
	}
	t.Setenv("CNISHIM_TEST_SECRET", "hunter2")
	got := pluginEnv(nil)
	if got == nil {
		t.Fatal("pluginEnv(nil) = nil, which would make the plugin inherit everything")
	}
	for _, kv := range got {
		if kv == "CNISHIM_TEST_SECRET=hunter2" {
			t.Fatal("pluginEnv(nil) kept the runtime's variables")
		}
	}
}

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
