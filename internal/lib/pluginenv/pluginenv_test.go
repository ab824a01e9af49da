package pluginenv

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
)

func TestFilter(t *testing.T) {
	in := []string{"HOME=/root", "CNI_COMMAND=ADD", "AWS_SECRET_ACCESS_KEY=x", "PATH=/usr/sbin:/usr/bin", "CNI_ARGS=a=b", "PATHX=1", "MYCNI_X=1"}
	want := []string{"CNI_ARGS=a=b", "CNI_COMMAND=ADD", "PATH=/usr/sbin:/usr/bin"}
	if got := Filter(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("Filter = %v; want %v", got, want)
	}
	t.Setenv("CNISHIM_TEST_SECRET", "hunter2")
	got := Filter(nil)
	if got == nil {
		t.Fatal("Filter(nil) = nil, which would make the plugin inherit everything")
	}
	if slices.Contains(got, "CNISHIM_TEST_SECRET=hunter2") {
		t.Fatal("Filter(nil) kept the runtime's variables")
	}
}

// envExec records the environment it is asked to run a plugin with.
type envExec struct {
	invoke.Exec
	got []string
}

func (e *envExec) ExecPlugin(_ context.Context, _ string, _ []byte, environ []string) ([]byte, error) {
	e.got = environ
	return nil, nil
}

func TestExec(t *testing.T) {
	inner := &envExec{}
	t.Setenv("CNISHIM_TEST_SECRET", "hunter2")
	if _, err := (Exec{inner}).ExecPlugin(t.Context(), "/opt/cni/bin/bridge", nil, nil); err != nil {
		t.Fatal(err)
	}
	if inner.got == nil || slices.Contains(inner.got, "CNISHIM_TEST_SECRET=hunter2") {
		t.Fatalf("plugin ran with %v; want only CNI_* and PATH", inner.got)
	}
}
