//go:build linux

package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// faultTimeout is the operation timeout of the faulty-plugin tests: short, so a hung plugin
// is killed quickly, and long enough for a real chain on a busy machine.
const faultTimeout = 4 * time.Second

// faultRounds is how many times each fault is tried through each driver, each round with
// fresh call counters.
const faultRounds = 3

// faultNetwork is the name of the network whose second plugin misbehaves.
const faultNetwork = "relfaulty"

// fault is one way the second plugin of a real bridge + host-local chain misbehaves on ADD.
// The plugin first allocates an address from a real host-local store of its own (DEL releases
// it), so every failure happens with addresses held by both plugins and a veth on the bridge.
type fault struct {
	name string
	add  behavior.Action
	// setUps is how many pods are set up in turn (default 1); fails says which (1-based) must
	// fail.
	setUps int
	fails  func(i int) bool
	// timeout: the failure must be the operation timeout (cninetwork.ErrTimeout; gRPC
	// DeadlineExceeded through the server).
	timeout bool
	// code, if not zero, is the CNI error code the caller must see (errors.As *types.Error).
	code uint
	// want are substrings of the error besides the network, plugin and pod, which every
	// error must name.
	want []string
}

func always(int) bool { return true }

var faults = []fault{
	{
		name:    "hang",
		add:     behavior.Action{Do: behavior.Hang, DelegateIPAM: true},
		fails:   always,
		timeout: true,
		want:    []string{"ADD timed out", `in plugin "faulty"`},
	},
	{
		name:  "crash after allocating",
		add:   behavior.Action{Do: behavior.Exit, ExitCode: 3, DelegateIPAM: true},
		fails: always,
		want:  []string{`plugin type="faulty"`, "netplugin failed with no error message: exit status 3"},
	},
	{
		name:  "garbage",
		add:   behavior.Action{Do: behavior.Garbage, DelegateIPAM: true},
		fails: always,
		want:  []string{`plugin type="faulty"`, "invalid character"},
	},
	{
		name:  "truncated result",
		add:   behavior.Action{Do: behavior.Truncated, DelegateIPAM: true},
		fails: always,
		want:  []string{`plugin type="faulty"`, "unexpected end of JSON input"},
	},
	{
		name:  "CNI error with a code",
		add:   behavior.Action{Do: behavior.Error, Code: 11, Msg: "cnitest: address pool busy", Details: "try again later", DelegateIPAM: true},
		fails: always,
		code:  11,
		want:  []string{`plugin type="faulty"`, "cnitest: address pool busy; try again later"},
	},
	{
		name:  "slow within the timeout",
		add:   behavior.Action{SleepMS: 500, DelegateIPAM: true},
		fails: func(int) bool { return false },
	},
	{
		name:   "fails only the 2nd call",
		add:    behavior.Action{Do: behavior.Error, OnCall: 2, Code: 7, Msg: "cnitest: second ADD fails", DelegateIPAM: true},
		setUps: 3,
		fails:  func(i int) bool { return i == 2 },
		code:   7,
		want:   []string{`plugin type="faulty"`, "cnitest: second ADD fails"},
	},
}

// faultTally counts what the faulty-plugin tests did and found, for the summary line.
type faultTally struct {
	setUps, failed, succeeded, timeouts int
	leaks, strays                       int
}

func (f *faultTally) log(t *testing.T, driver string) {
	t.Logf("SUMMARY faulty plugins via %s: %d behaviours x %d rounds, %d set-ups tried, %d failed with a clear error (%d by the operation timeout), %d succeeded and were torn down; left behind: %d leaks (IPs, veths, netns, cache entries, sandbox records), %d plugin processes, 0 goroutines",
		driver, len(faults), faultRounds, f.setUps, f.failed, f.timeouts, f.succeeded, f.leaks, f.strays)
}

// faultBehavior writes the behavior file of a fault: ADD does what the fault says (after
// allocating), DEL releases what host-local holds. Call counters live in a fresh directory.
func faultBehavior(t *testing.T, path string, f fault) {
	t.Helper()
	counters, err := os.MkdirTemp(filepath.Dir(path), "counters-")
	if err != nil {
		t.Fatal(err)
	}
	plugintest.MustWriteBehavior(t, path, plugintest.Behavior{
		Counters: counters,
		Commands: map[string]behavior.Action{
			"ADD": f.add,
			"DEL": {DelegateIPAM: true},
		},
	})
}

// lastReserved returns what each host-local store of the faulty network last handed out.
func (n *node) lastReserved() map[string]string {
	out := map[string]string{}
	for _, store := range []string{"bridge", "faulty"} {
		b, _ := os.ReadFile(filepath.Join(n.ipamDir, store, faultNetwork, "last_reserved_ip.0"))
		out[store] = string(b)
	}
	return out
}

// checkAllocated fails the test unless both host-local stores of the faulty network handed out
// an address since before (from lastReserved): the fault struck with addresses held, so
// "nothing left" means the rollback released them.
func (n *node) checkAllocated(t *testing.T, before map[string]string) {
	t.Helper()
	for store, now := range n.lastReserved() {
		if now == "" || now == before[store] {
			t.Errorf("the %s plugin's host-local store allocated nothing for the failed set-up (last reserved %q)", store, now)
		}
	}
}

// checkFaultError checks that err is the clear error the fault must produce for pod podRef.
func checkFaultError(t *testing.T, f fault, podRef string, err error) {
	t.Helper()
	msg := err.Error()
	for _, w := range append([]string{fmt.Sprintf("network %q", faultNetwork), podRef}, f.want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not say %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "rollback") {
		t.Errorf("the rollback of the failed set-up failed:\n%s", msg)
	}
}

// TestFaultyPluginsPluginAPI drives each fault through cninetwork.Plugin.SetUpPod.
func TestFaultyPluginsPluginAPI(t *testing.T) {
	n := newNode(t)
	n.installFaulty()
	behaviorFile := filepath.Join(n.dir, "faulty.behavior.json")
	faultBehavior(t, behaviorFile, fault{})
	n.writeConf("10-faulty.conflist", conflist("1.0.0", faultNetwork, n.bridgePlugin(), n.faultyPlugin(behaviorFile)))

	goroutinesBefore := framework.StableGoroutines(t, framework.ProcessGoroutines)
	p := n.plugin(faultTimeout)
	framework.WaitDefault(t, p, faultNetwork)
	var tally faultTally

	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			for round := 1; round <= faultRounds; round++ {
				apiFaultRound(t, n, p, behaviorFile, f, &tally)
			}
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	framework.GoroutinesSettle(t, goroutinesBefore)
	tally.log(t, "the Plugin API")
}

// apiFaultRound tries fault f once through the Plugin API and checks that nothing is left.
func apiFaultRound(t *testing.T, n *node, p *cninetwork.Plugin, behaviorFile string, f fault, tally *faultTally) {
	t.Helper()
	ctx := t.Context()
	faultBehavior(t, behaviorFile, f)
	baseline := framework.StableGoroutines(t, framework.ProcessGoroutines)
	before := leakcheck.Take(n.scope("", n.cacheDir))
	setUps := max(f.setUps, 1)
	var up, pods []*cninetwork.Pod
	for i := 1; i <= setUps; i++ {
		pod := n.pod(fmt.Sprintf("faulty-%d", i))
		pods = append(pods, pod)
		reserved := n.lastReserved()
		cctx, cancel := framework.CallContext(t)
		st, err := p.SetUpPod(cctx, pod)
		cancel()
		tally.setUps++
		if !f.fails(i) {
			if err != nil {
				t.Fatalf("set-up %d: %v", i, err)
			}
			if len(st.IPs) == 0 {
				t.Fatalf("set-up %d: no IPs in %+v", i, st)
			}
			tally.succeeded++
			up = append(up, pod)
			continue
		}
		if err == nil {
			t.Fatalf("set-up %d succeeded, want the fault's error", i)
		}
		tally.failed++
		t.Logf("set-up %d: %v", i, err)
		n.checkAllocated(t, reserved)
		checkFaultError(t, f, pod.String(), err)
		if got := errors.Is(err, cninetwork.ErrTimeout); got != f.timeout {
			t.Errorf("errors.Is(err, ErrTimeout) = %v, want %v", got, f.timeout)
		}
		if f.timeout {
			tally.timeouts++
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a timeout that does not wrap context.DeadlineExceeded: %v", err)
			}
		}
		var cniErr *types.Error
		if f.code != 0 && (!errors.As(err, &cniErr) || cniErr.Code != f.code) {
			t.Errorf("want a *types.Error with code %d in the chain, got %#v", f.code, cniErr)
		}
		if _, err := p.GetPodNetworkStatus(ctx, pod); !errors.Is(err, cninetwork.ErrUnknownSandbox) {
			t.Errorf("status of the failed pod: %v, want ErrUnknownSandbox", err)
		}
		// The failed pod holds nothing any more, even while the pods set up around it
		// hold theirs.
		ports, err := leakcheck.BridgePorts(n.bridge)
		if err != nil {
			t.Fatal(err)
		}
		if len(ports) != len(up) {
			t.Errorf("bridge %s has ports %v, want %d (one per pod up)", n.bridge, ports, len(up))
		}
	}
	for _, pod := range up {
		if err := p.TearDownPod(ctx, pod); err != nil {
			t.Fatalf("tear down %s: %v", pod, err)
		}
	}
	// The namespaces are the test's own (a runtime makes them): read what is left
	// while they exist, as removing one destroys its end of a leaked veth pair.
	tally.leaks += framework.CheckNoLeaks(t, f.name, before, leakcheck.Take(n.scope("", n.cacheDir)))
	for _, pod := range pods {
		n.removeNetns(pod.NetNS)
	}
	tally.strays += framework.CheckNoStrays(t, []string{n.binDir})
	framework.GoroutinesSettle(t, baseline)
}

// TestFaultyPluginsServe drives each fault through a cnishim serve process's RunPodSandbox.
func TestFaultyPluginsServe(t *testing.T) {
	n := newNode(t)
	n.installFaulty()
	behaviorFile := filepath.Join(n.dir, "faulty.behavior.json")
	faultBehavior(t, behaviorFile, fault{})
	n.writeConf("10-faulty.conflist", conflist("1.0.0", faultNetwork, n.bridgePlugin(), n.faultyPlugin(behaviorFile)))
	s := startServer(t, n, serverOpts{timeout: faultTimeout})
	waitServerReady(t, s)
	var tally faultTally

	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			for round := 1; round <= faultRounds; round++ {
				serveFaultRound(t, n, s, behaviorFile, f, &tally)
			}
		})
	}
	tally.log(t, "cnishim serve")
}

// serveFaultRound tries fault f once through the server and checks that nothing is left.
func serveFaultRound(t *testing.T, n *node, s *server, behaviorFile string, f fault, tally *faultTally) {
	t.Helper()
	ctx := t.Context()
	nsDir := filepath.Join(s.StateDir, "netns")
	faultBehavior(t, behaviorFile, f)
	baseline := framework.StableGoroutines(t, s.Goroutines)
	before := leakcheck.Take(n.scope(nsDir, s.CacheDir))
	setUps := max(f.setUps, 1)
	var up []string
	for i := 1; i <= setUps; i++ {
		name := fmt.Sprintf("faulty-%d", i)
		reserved := n.lastReserved()
		cctx, cancel := framework.CallContext(t)
		resp, err := s.RT.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(name)})
		cancel()
		tally.setUps++
		if !f.fails(i) {
			if err != nil {
				t.Fatalf("set-up %d: %v", i, err)
			}
			n.addNeedle(resp.GetPodSandboxId())
			tally.succeeded++
			up = append(up, resp.GetPodSandboxId())
			continue
		}
		if err == nil {
			n.addNeedle(resp.GetPodSandboxId())
			t.Fatalf("set-up %d succeeded, want the fault's error", i)
		}
		tally.failed++
		t.Logf("set-up %d: %v", i, err)
		n.checkAllocated(t, reserved)
		checkFaultError(t, f, fmt.Sprintf("pod reliability/%s (sandbox ", name), err)
		wantCode := codes.Internal
		if f.timeout {
			wantCode = codes.DeadlineExceeded
			tally.timeouts++
		}
		if got := status.Code(err); got != wantCode {
			t.Errorf("gRPC code %v, want %v", got, wantCode)
		}
		// The failed sandbox is gone: no record, no veth, while the others stay.
		ids, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(up) {
			t.Errorf("sandboxes %v after the failure, want only the %d set up", ids, len(up))
		}
		ports, err := leakcheck.BridgePorts(n.bridge)
		if err != nil {
			t.Fatal(err)
		}
		if len(ports) != len(up) {
			t.Errorf("bridge %s has ports %v, want %d (one per pod up)", n.bridge, ports, len(up))
		}
	}
	for _, id := range up {
		if _, err := s.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("stop %s: %v", id, err)
		}
		if _, err := s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	if files := s.SandboxFiles(); len(files) != 0 {
		t.Errorf("sandbox records left: %v", files)
	}
	tally.leaks += framework.CheckNoLeaks(t, f.name, before, leakcheck.Take(n.scope(nsDir, s.CacheDir)))
	tally.strays += framework.CheckNoStrays(t, []string{n.binDir}, s.PID())
	s.GoroutinesSettle(baseline)
}
