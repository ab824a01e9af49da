//go:build linux

package criserver

import (
	"errors"
	"testing"

	"github.com/cnishim/cnishim/internal/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestFailedTeardownKeepsNetNS: a sandbox whose teardown fails keeps its network namespace,
// through a stop and a restart, so every retried teardown runs in it rather than with an empty
// CNI_NETNS; once a teardown succeeds, the namespace goes.
func TestFailedTeardownKeepsNetNS(t *testing.T) {
	fn := &fakeNetwork{}
	e := newEnv(t, fn)
	id := e.run(t, podConfig("web", 0, nil))
	rec, err := e.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	fn.mu.Lock()
	fn.tearErr = errors.New("del boom")
	fn.mu.Unlock()
	if _, err := e.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err == nil {
		t.Fatal("stop succeeded with a failing teardown")
	}
	if ok, _ := netns.IsNetNS(rec.NetNSPath); !ok {
		t.Fatal("the netns was removed although its teardown failed")
	}

	// A restart keeps it too: the record still names it.
	e.start(t)
	if ok, _ := netns.IsNetNS(rec.NetNSPath); !ok {
		t.Fatal("Recover removed the netns of a sandbox not torn down")
	}

	fn.mu.Lock()
	fn.tearErr = nil
	fn.mu.Unlock()
	if _, err := e.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	fn.mu.Lock()
	tears := append([]string(nil), fn.tearDowns[0].NetNS, fn.tearDowns[len(fn.tearDowns)-1].NetNS)
	fn.mu.Unlock()
	for i, ns := range tears {
		if ns != rec.NetNSPath {
			t.Fatalf("teardown %d got netns %q, want %q", i, ns, rec.NetNSPath)
		}
	}
	if ok, _ := netns.IsNetNS(rec.NetNSPath); ok {
		t.Fatal("netns still mounted after a successful stop")
	}
	if got, _ := e.store.Get(id); got.State != sandboxstore.StateNotReady {
		t.Fatalf("state after stop = %s", got.State)
	}
}
