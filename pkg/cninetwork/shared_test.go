package cninetwork

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// otherRuntimeAttach attaches container id to n through a plain libcni caller on p's cache
// dir, as another runtime on the node would: a libcni cache entry and nothing of p's.
func otherRuntimeAttach(t *testing.T, p *Plugin, fe *fakeExec, conflist, id string) {
	t.Helper()
	list, err := libcni.ConfListFromBytes([]byte(conflist))
	if err != nil {
		t.Fatal(err)
	}
	c := libcni.NewCNIConfigWithCacheDir([]string{"/opt/cni/bin"}, p.opts.cacheDir, fe)
	if _, err := c.AddNetworkList(t.Context(), list, &libcni.RuntimeConf{ContainerID: id, NetNS: netnsPath, IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
}

// TestGCLeavesOtherRuntimes: an attachment another runtime cached in the shared libcni cache
// is never deleted by GC, whatever the valid set, and stays valid for the plugins' GC, even on
// one of this Plugin's networks; a stale sandbox of this Plugin's is deleted.
func TestGCLeavesOtherRuntimes(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()
	for _, id := range []string{"mine-live", "mine-gone"} {
		if _, err := p.SetUpPod(ctx, testPod(id)); err != nil {
			t.Fatal(err)
		}
	}
	otherRuntimeAttach(t, p, fe, statusNet, "theirs-same-net")
	otherRuntimeAttach(t, p, fe, bridgeNet, "theirs-other-net")

	fe.reset()
	if err := p.GC(ctx, validIDs("mine-live")); err != nil {
		t.Fatal(err)
	}
	calls := fe.callsOf("")
	wantCalls(t, calls, "DEL firewall net-s eth0", "DEL bridge net-s eth0", "GC bridge net-s ", "GC firewall net-s ")
	if calls[0].ContainerID != "mine-gone" || calls[1].ContainerID != "mine-gone" {
		t.Fatalf("GC deleted %s and %s; want only mine-gone", calls[0].ContainerID, calls[1].ContainerID)
	}
	want := []string{"mine-live/eth0", "theirs-other-net/eth0", "theirs-same-net/eth0"}
	if got := gcValid(t, calls[2]); !slices.Equal(got, want) {
		t.Fatalf("GC valid attachments = %v; want %v", got, want)
	}
	if got, want := cacheFiles(t, p), []string{"net-a-theirs-other-net-eth0", "net-s-mine-live-eth0", "net-s-theirs-same-net-eth0"}; !slices.Equal(got, want) {
		t.Fatalf("cache after GC = %v; want %v", got, want)
	}
}

// TestGCKeepsDisableGC: a stale attachment of this Plugin's on a network with disableGC is not
// deleted by GC and stays recorded, while the sandbox's other attachments are; the teardown
// still deletes it.
func TestGCKeepsDisableGC(t *testing.T) {
	noGC := `{"cniVersion":"1.1.0","name":"net-nogc","disableGC":true,"plugins":[{"type":"macvlan"}]}`
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, noGC))
	p := newTestPlugin(t, fe, src)
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-nogc"}}
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	fe.reset()
	if err := p.GC(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf(""), "DEL ptp net-b eth0")
	if got := recordFiles(t, p); !slices.Equal(got, []string{"s1"}) {
		t.Fatalf("records after GC = %v; want s1's kept for its disableGC attachment", got)
	}
	fe.reset()
	if err := p.GC(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if dels := fe.callsOf("DEL"); len(dels) != 0 {
		t.Fatalf("second GC ran DELs: %v", summary(t, dels))
	}
	if err := p.TearDownPod(t.Context(), &Pod{SandboxID: "s1"}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf("DEL"), "DEL macvlan net-nogc eth1")
	if got := recordFiles(t, p); len(got) != 0 {
		t.Fatalf("records after teardown = %v", got)
	}
}

// TestGCValidFromRecords: after a restart, a running sandbox whose libcni cache entry is
// damaged (libcni skips it when listing) is still a valid attachment for the plugins' GC, as
// its record names it; a damaged record stops the plugins' GC instead.
func TestGCValidFromRecords(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	first := newTestPlugin(t, fe, src)
	if _, err := first.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(first.opts.cacheDir, "results", "net-s-s1-eth0"), []byte(`{"kind":`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newTestPlugin(t, fe, src, WithCacheDir(first.opts.cacheDir))
	fe.reset()
	if err := p.GC(t.Context(), validIDs("s1")); err != nil {
		t.Fatal(err)
	}
	gcs := fe.callsOf("GC")
	if len(gcs) == 0 {
		t.Fatal("no GC ran")
	}
	if got := gcValid(t, gcs[0]); !slices.Equal(got, []string{"s1/eth0"}) {
		t.Fatalf("GC valid attachments = %v; want s1/eth0 from its record", got)
	}

	path := writeRecord(t, p, "s2", []byte(`{"kind":`))
	fe.reset()
	if err := p.GC(t.Context(), validIDs("s1", "s2")); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("GC with a damaged record = %v; want an error naming %s", err, path)
	}
	if gcs := fe.callsOf("GC"); len(gcs) != 0 {
		t.Fatalf("plugins' GC ran with a damaged record: %v", summary(t, gcs))
	}
}

// TestGCGateOrder: a GC waits for the set-ups that came before it, queued ones included, and
// keeps out those that come after it; a set-up that waits behind a GC gives up at its deadline.
func TestGCGateOrder(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 1}))
	ctx := t.Context()

	firstIn, releaseFirst := make(chan struct{}), make(chan struct{})
	secondIn, releaseSecond := make(chan struct{}), make(chan struct{})
	fe.set("bridge", "ADD", reply{hook: func(_ context.Context, c execCall) {
		if c.ContainerID == "first" {
			close(firstIn)
			<-releaseFirst
		} else if c.ContainerID == "second" {
			close(secondIn)
			<-releaseSecond
		}
	}})
	setUp := func(id string) chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := p.SetUpPod(ctx, testPod(id))
			ch <- err
		}()
		return ch
	}
	first := setUp("first")
	<-firstIn
	second := setUp("second")
	waitFor(t, "second set-up queued", func() bool { return p.Admission().Add.Queued == 1 })

	gcIn, releaseGC := make(chan struct{}), make(chan struct{})
	fe.set("bridge", "GC", reply{hook: func(context.Context, execCall) { close(gcIn); <-releaseGC }})
	gcDone := make(chan error, 1)
	go func() { gcDone <- p.GC(ctx, validIDs("first", "second")) }()
	waitFor(t, "GC waiting for the gate", func() bool {
		p.gate.mu.Lock()
		defer p.gate.mu.Unlock()
		return p.gate.writer
	})
	close(releaseFirst)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The queued set-up came before the GC asked for the gate: its chain runs first. (A set-up
	// takes the gate before its slots, so that no set-up holds a slot while it waits behind a
	// GC that waits for chains that need one.)
	select {
	case <-secondIn:
	case <-gcIn:
		t.Fatal("the GC ran while a set-up that came before it was queued for its chain")
	}
	// A set-up that comes while the GC waits gives up at its deadline.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.SetUpPod(short, testPod("third")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("set-up behind a GC = %v; want ErrTimeout", err)
	}
	close(releaseSecond)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	<-gcIn
	close(releaseGC)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	if calls := fe.callsOf("ADD"); slices.ContainsFunc(calls, func(c execCall) bool { return c.ContainerID == "third" }) {
		t.Fatal("the set-up refused behind the GC ran a plugin")
	}
}

// TestTearDownWithoutNetNS: a teardown given no netns path passes each attachment the netns
// it was set up in, if it still is one, rather than an empty CNI_NETNS.
func TestTearDownWithoutNetNS(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	fe.reset()
	if err := p.TearDownPod(t.Context(), &Pod{SandboxID: "s1"}); err != nil {
		t.Fatal(err)
	}
	dels := fe.callsOf("DEL")
	wantCalls(t, dels, "DEL ptp net-b eth0")
	if dels[0].NetNS != netnsPath {
		t.Fatalf("DEL got CNI_NETNS %q; want the recorded %q", dels[0].NetNS, netnsPath)
	}
}

// TestLoopbackDelFailureForgotten: a failed DEL of the built-in loopback network does not fail
// the teardown, and leaves no cache entry by which later GCs would retry it or a new set-up of
// the ID be refused.
func TestLoopbackDelFailureForgotten(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, WithLoopbackPlugin())
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	fe.set("loopback", "DEL", reply{err: errors.New("loopback broke")})
	if err := p.TearDownPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache after teardown = %v; want nothing", got)
	}
	fe.reset()
	if err := p.GC(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if dels := fe.callsOf("DEL"); len(dels) != 0 {
		t.Fatalf("GC retried: %v", summary(t, dels))
	}
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatalf("set-up of the torn-down ID: %v", err)
	}
}

// TestNoFallbackTeardown: a sandbox with nothing recorded or cached gets no DEL on the
// current network: a pod is never torn down with a configuration other than its own.
func TestNoFallbackTeardown(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	if err := p.TearDownPod(t.Context(), testPod("never")); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf(""))
}

// TestGCGateWaitCapped: a set-up stuck in a plugin holds a waiting GC back only for the GC's
// cap on that wait, and the set-ups held back behind the GC meanwhile go on once it gives up;
// the GC says its plugins' GC did not run.
func TestGCGateWaitCapped(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	const wait = 200 * time.Millisecond
	p := newTestPlugin(t, fe, src, WithAdmission(AdmissionLimits{Add: 4}), withGCGateWait(wait))
	ctx := t.Context()
	stuckIn, unstick := make(chan struct{}), make(chan struct{})
	fe.set("bridge", "ADD", reply{hook: func(_ context.Context, c execCall) {
		if c.ContainerID == "stuck" {
			close(stuckIn)
			<-unstick
		}
	}})
	stuck := make(chan error, 1)
	go func() { _, err := p.SetUpPod(ctx, testPod("stuck")); stuck <- err }()
	<-stuckIn

	gcDone := make(chan error, 1)
	go func() { gcDone <- p.GC(ctx, validIDs("stuck")) }()
	waitFor(t, "GC waiting for the gate", func() bool {
		p.gate.mu.Lock()
		defer p.gate.mu.Unlock()
		return p.gate.writer
	})
	held := make(chan error, 1)
	go func() { _, err := p.SetUpPod(ctx, testPod("held")); held <- err }()

	if err := <-gcDone; err == nil || !strings.Contains(err.Error(), "set-ups still running after 200ms") {
		t.Fatalf("GC behind a stuck set-up = %v; want it to give up, saying why", err)
	}
	if err := <-held; err != nil {
		t.Fatalf("set-up held back behind the GC: %v; want it run once the GC gave up", err)
	}
	if gcs := fe.callsOf("GC"); len(gcs) != 0 {
		t.Fatalf("plugins' GC ran while a set-up was in flight: %v", summary(t, gcs))
	}
	close(unstick)
	if err := <-stuck; err != nil {
		t.Fatal(err)
	}
}
