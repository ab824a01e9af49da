//go:build linux

package criserver

import (
	"errors"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestFailedTeardownKeepsNetNS: a sandbox whose teardown fails is NOTREADY ("stopping") and
// keeps its network namespace, through a stop and a recovery, so every retried teardown runs in
// it rather than with an empty CNI_NETNS; a restart finishes the stop, and the namespace goes.
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
	// A stop that did not finish never leaves the sandbox READY with part of its network gone.
	if got, _ := e.store.Get(id); got.State != sandboxstore.StateStopping {
		t.Fatalf("state after a failed stop = %s, want %s", got.State, sandboxstore.StateStopping)
	}
	st, err := e.rt.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("status after a failed stop = %v, %v; want NOTREADY", st.GetStatus().GetState(), err)
	}

	// A recovery whose teardown fails keeps it too: the record still names it.
	if err := e.srv.Recover(t.Context()); err == nil {
		t.Fatal("Recover succeeded with a failing teardown")
	}
	if ok, _ := netns.IsNetNS(rec.NetNSPath); !ok {
		t.Fatal("Recover removed the netns of a sandbox not torn down")
	}

	// A restart finishes the stop once the teardown works.
	fn.mu.Lock()
	fn.tearErr = nil
	fn.mu.Unlock()
	e.start(t)
	got, _ := e.store.Get(id)
	if got.State != sandboxstore.StateNotReady || got.Reason != ReasonStopCutOff {
		t.Fatalf("after the restart: state %s, reason %q; want %s, %q", got.State, got.Reason, sandboxstore.StateNotReady, ReasonStopCutOff)
	}
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
