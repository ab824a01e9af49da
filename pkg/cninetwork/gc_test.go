package cninetwork

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// gcValid returns the valid attachments a GC call was given, as "container/ifname", sorted.
func gcValid(t *testing.T, c execCall) []string {
	t.Helper()
	var conf struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(c.Stdin, &conf); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range conf.Valid {
		out = append(out, a.ContainerID+"/"+a.IfName)
	}
	sort.Strings(out)
	return out
}

func TestGC(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	s, x := network(t, statusNet), network(t, bridgeNet)
	src.publish(nil, s, x)
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := p.SetUpPod(ctx, testPod(id)); err != nil {
			t.Fatal(err)
		}
	}
	d := testPod("d")
	d.ExtraNetworks = []NetworkSelection{{Name: "net-a"}}
	if _, err := p.SetUpPod(ctx, d); err != nil {
		t.Fatal(err)
	}
	src.publish(nil, s) // net-a is gone; d's attachment to it is stale with d

	fe.reset()
	if err := p.GC(ctx, validIDs("a", "b")); err != nil {
		t.Fatal(err)
	}
	calls := fe.callsOf("")
	if len(calls) != 9 {
		t.Fatalf("plugin calls %v; want 7 DELs and 2 GCs", summary(t, calls))
	}
	wantCalls(t, calls[:2], "DEL firewall net-s eth0", "DEL bridge net-s eth0") // c
	// d: both networks side by side, the deleted one with its cached config.
	wantChains(t, calls[2:7], "", map[string][]string{
		"eth0": {"DEL firewall net-s eth0", "DEL bridge net-s eth0"},
		"eth1": {"DEL bandwidth net-a eth1", "DEL portmap net-a eth1", "DEL bridge net-a eth1"},
	}, "")
	wantCalls(t, calls[7:], "GC bridge net-s ", "GC firewall net-s ")
	for _, c := range calls[:7] {
		if c.NetNS != netnsPath {
			t.Fatalf("stale DEL got netns %q; want the cached one, which still exists", c.NetNS)
		}
	}
	if got, want := gcValid(t, calls[7]), []string{"a/eth0", "b/eth0"}; !slices.Equal(got, want) {
		t.Fatalf("GC valid attachments = %v; want %v", got, want)
	}
	if got := cacheFiles(t, p); !slices.Equal(got, []string{"net-s-a-eth0", "net-s-b-eth0"}) {
		t.Fatalf("cache after GC = %v", got)
	}
	if _, err := p.GetPodNetworkStatus(ctx, testPod("c")); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("status of a collected sandbox = %v; want ErrUnknownSandbox", err)
	}

	// A sandbox with an operation in flight is left alone, and stays valid for the plugins.
	unlock, err := p.locks.Lock(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	fe.reset()
	if err := p.GC(ctx, validIDs("a")); err != nil {
		t.Fatal(err)
	}
	unlock()
	calls = fe.callsOf("")
	wantCalls(t, calls, "GC bridge net-s ", "GC firewall net-s ")
	if got, want := gcValid(t, calls[0]), []string{"a/eth0", "b/eth0"}; !slices.Equal(got, want) {
		t.Fatalf("GC valid attachments = %v; want %v", got, want)
	}

	// A plugin's GC failure is reported with the network.
	fe.set("firewall", "GC", reply{err: &types.Error{Code: 999, Msg: "gc broke"}})
	err = p.GC(ctx, validIDs("a", "b"))
	var te *types.Error
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `network "net-s"`) {
		t.Fatalf("GC = %v; want the plugin's error naming the network", err)
	}
}

// TestGCUnreadableCache: if the cache cannot be listed, GC does nothing rather than run with
// an incomplete valid set.
func TestGCUnreadableCache(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	p := newTestPlugin(t, fe, src)
	if err := os.WriteFile(filepath.Join(p.opts.cacheDir, "results"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.GC(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "read CNI cache") {
		t.Fatalf("GC = %v; want a cache read error", err)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("plugins ran: %v", summary(t, c))
	}
}

// TestGCWaitsForSetups: GC's plugin phase never overlaps an ADD, and a sandbox set up
// meanwhile is among the valid attachments even though the caller did not list it.
func TestGCWaitsForSetups(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()

	addStarted, releaseAdd := make(chan struct{}), make(chan struct{})
	fe.set("bridge", "ADD", reply{hook: func(context.Context, execCall) { close(addStarted) }, block: releaseAdd})
	fe.set("bridge", "GC", reply{hook: func(context.Context, execCall) {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		if n := fe.inFlight["new"]; n != 0 {
			t.Errorf("GC ran while %d ADD execs of sandbox new were in flight", n)
		}
	}})

	setup := make(chan error, 1)
	go func() {
		_, err := p.SetUpPod(ctx, testPod("new"))
		setup <- err
	}()
	<-addStarted
	gcDone := make(chan error, 1)
	go func() { gcDone <- p.GC(ctx, nil) }()
	// GC reaches its plugin phase while the ADD runs: it waits at the gate for the ADD.
	waitFor(t, "GC waiting at the gate for the ADD", func() bool {
		p.gate.mu.Lock()
		defer p.gate.mu.Unlock()
		return p.gate.writer && p.gate.readers == 1
	})
	close(releaseAdd)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	if err := <-setup; err != nil {
		t.Fatal(err)
	}
	gcs := fe.callsOf("GC")
	if len(gcs) == 0 {
		t.Fatal("no GC ran")
	}
	if got := gcValid(t, gcs[0]); !slices.Equal(got, []string{"new/eth0"}) {
		t.Fatalf("GC valid attachments = %v; want the sandbox set up meanwhile", got)
	}
	if got := cacheFiles(t, p); !slices.Equal(got, []string{"net-s-new-eth0"}) {
		t.Fatalf("cache = %v", got)
	}
}

// TestGCSkipsSetUpFinishedAfterListing: a set-up in flight when GC lists the stale sandboxes
// (its record is on disk) and done by the time GC takes its lock is left alone, not torn down
// right after SetUpPod returned its IPs.
func TestGCSkipsSetUpFinishedAfterListing(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()

	addStarted, releaseAdd := make(chan struct{}), make(chan struct{})
	fe.set("bridge", "ADD", reply{hook: func(context.Context, execCall) { close(addStarted) }, block: releaseAdd})
	setup := make(chan error, 1)
	go func() {
		_, err := p.SetUpPod(ctx, testPod("new"))
		setup <- err
	}()
	<-addStarted
	var setupErr error
	// GC asks for the valid sandboxes once it has listed its records and the sandboxes in
	// flight: the set-up finishes right then.
	valid := func(context.Context) ([]string, error) {
		close(releaseAdd)
		setupErr = <-setup
		return nil, nil
	}
	if err := p.GC(ctx, valid); err != nil {
		t.Fatal(err)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	if dels := fe.callsOf("DEL"); len(dels) != 0 {
		t.Fatalf("GC deleted the sandbox whose set-up finished meanwhile: %v", summary(t, dels))
	}
	if _, err := p.GetPodNetworkStatus(ctx, testPod("new")); err != nil {
		t.Fatalf("status of the sandbox after GC: %v", err)
	}
}

// TestGCAttachDuringGC: an attachment another runtime makes while GC runs is never deleted.
// A plain libcni caller on the same cache dir attaches a pod to the second of two CNI 1.1
// networks while the first network's plugins are being collected: it gets no DEL, and the
// second network's plugins are told it is valid.
func TestGCAttachDuringGC(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	first := network(t, `{"cniVersion":"1.1.0","name":"net-g1","plugins":[{"type":"bridge"}]}`)
	second := network(t, `{"cniVersion":"1.1.0","name":"net-g2","plugins":[{"type":"ptp"}]}`)
	src.publish(nil, first, second)
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()
	if _, err := p.SetUpPod(ctx, testPod("mine")); err != nil {
		t.Fatal(err)
	}

	other := libcni.NewCNIConfigWithCacheDir([]string{"/opt/cni/bin"}, p.opts.cacheDir, fe)
	rt := &libcni.RuntimeConf{ContainerID: "theirs", NetNS: netnsPath, IfName: "eth0"}
	attached := make(chan error, 1)
	fe.set("bridge", "GC", reply{hook: func(ctx context.Context, _ execCall) {
		_, err := other.AddNetworkList(ctx, second.Config, rt)
		attached <- err
	}})
	fe.reset()
	if err := p.GC(ctx, validIDs("mine")); err != nil {
		t.Fatal(err)
	}
	if err := <-attached; err != nil {
		t.Fatalf("the other caller's ADD during GC: %v", err)
	}
	for _, c := range fe.callsOf("DEL") {
		t.Errorf("GC sent DEL %s %s for %s %s", c.Plugin, c.IfName, c.ContainerID, c.conf(t)["name"])
	}
	gcs := fe.callsOf("GC")
	if len(gcs) != 2 || gcs[1].Plugin != "ptp" {
		t.Fatalf("GC calls %v; want bridge's, then ptp's", summary(t, gcs))
	}
	if got := gcValid(t, gcs[1]); !slices.Contains(got, "theirs/eth0") {
		t.Fatalf("net-g2's GC valid attachments = %v; want the other caller's theirs/eth0 among them", got)
	}
	if got := cacheFiles(t, p); !slices.Contains(got, "net-g2-theirs-eth0") {
		t.Fatalf("cache after GC = %v; want the other caller's attachment kept", got)
	}
}
