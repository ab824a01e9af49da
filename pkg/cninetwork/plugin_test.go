package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// cacheFiles lists libcni's cached results under p's cache dir.
func cacheFiles(t *testing.T, p *Plugin) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.opts.cacheDir, "results"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func wantCalls(t *testing.T, got []execCall, want ...string) {
	t.Helper()
	if s := summary(t, got); !slices.Equal(s, want) {
		t.Fatalf("plugin calls:\n  %s\nwant\n  %s", strings.Join(s, "\n  "), strings.Join(want, "\n  "))
	}
}

// wantChains checks calls that run chains side by side: first (if set) comes first, last (if
// set) last, and in between each interface's calls are those of chains, in order.
func wantChains(t *testing.T, got []execCall, first string, chains map[string][]string, last string) {
	t.Helper()
	s := summary(t, got)
	if first != "" {
		if len(s) == 0 || s[0] != first {
			t.Fatalf("plugin calls %v do not start with %q", s, first)
		}
		s = s[1:]
	}
	if last != "" {
		if len(s) == 0 || s[len(s)-1] != last {
			t.Fatalf("plugin calls %v do not end with %q", s, last)
		}
		s = s[:len(s)-1]
	}
	per := map[string][]string{}
	for _, c := range s {
		f := strings.Fields(c)
		per[f[len(f)-1]] = append(per[f[len(f)-1]], c)
	}
	if !reflect.DeepEqual(per, chains) {
		t.Fatalf("plugin calls per interface:\n  %v\nwant\n  %v", per, chains)
	}
}

// TestSetUpPodStdinAndEnv checks, exactly, what each plugin of the chain receives on ADD.
func TestSetUpPodStdinAndEnv(t *testing.T) {
	t.Setenv("CNISHIM_TEST_SECRET", "hunter2")
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	if err := p.SetPodCIDRs("10.88.0.0/16"); err != nil {
		t.Fatal(err)
	}

	pod := testPod("s1")
	pod.PortMappings = []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}
	pod.Annotations = map[string]string{annotationIngressBandwidth: "1M"}
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(st); !slices.Equal(got, []string{"10.88.0.1"}) {
		t.Fatalf("status IPs = %v; want 10.88.0.1", got)
	}
	calls := fe.callsOf("")
	wantCalls(t, calls, "ADD bridge net-a eth0", "ADD portmap net-a eth0", "ADD bandwidth net-a eth0")

	wantArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-s1;K8S_POD_INFRA_CONTAINER_ID=s1;K8S_POD_UID=uid-s1"
	prev := `{"cniVersion":"1.0.0","interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/proc/self/ns/net"}],"ips":[{"address":"10.88.0.1/16","interface":1}]}`
	wantStdin := []string{
		`{"cniVersion":"1.0.0","name":"net-a","type":"bridge","bridge":"cni0"}`,
		`{"cniVersion":"1.0.0","name":"net-a","type":"portmap","capabilities":{"portMappings":true},
		  "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},"prevResult":` + prev + `}`,
		`{"cniVersion":"1.0.0","name":"net-a","type":"bandwidth","capabilities":{"bandwidth":true},
		  "runtimeConfig":{"bandwidth":{"ingressRate":1000000,"ingressBurst":2147483647}},"prevResult":` + prev + `}`,
	}
	for i, c := range calls {
		assertJSONBytesEqual(t, "stdin of "+c.Plugin, c.Stdin, wantStdin[i])
		wantEnv := []string{
			"CNI_ARGS=" + wantArgs,
			"CNI_COMMAND=ADD",
			"CNI_CONTAINERID=s1",
			"CNI_IFNAME=eth0",
			"CNI_NETNS=" + netnsPath,
			"CNI_PATH=/opt/cni/bin",
			"PATH=" + os.Getenv("PATH"),
		}
		if !reflect.DeepEqual(c.Env, wantEnv) {
			t.Fatalf("env of %s =\n%v\nwant\n%v", c.Plugin, c.Env, wantEnv)
		}
	}
	if got := cacheFiles(t, p); !slices.Equal(got, []string{"net-a-s1-eth0"}) {
		t.Fatalf("cache = %v", got)
	}
}

func TestPluginEnvPassthrough(t *testing.T) {
	t.Setenv("CNISHIM_TEST_SECRET", "hunter2")
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, WithPluginEnv(true))
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	if env := fe.callsOf("ADD")[0].Env; !slices.Contains(env, "CNISHIM_TEST_SECRET=hunter2") {
		t.Fatalf("with WithPluginEnv(true) the plugin's env lacks the runtime's variables: %v", env)
	}
}

// TestTearDownUsesCachedConfig: a pod set up on net-a is torn down on net-a, with the args and
// capability args of its ADD, after the default moved to net-b, and after net-a disappeared.
func TestTearDownUsesCachedConfig(t *testing.T) {
	for _, tc := range []string{"default moved", "network deleted"} {
		t.Run(tc, func(t *testing.T) {
			fe, src := newFakeExec(), newFakeSource()
			a, b := network(t, bridgeNet), network(t, otherNet)
			src.publish(nil, a, b)
			p := newTestPlugin(t, fe, src)
			pod := testPod("s1")
			pod.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 8080}}
			if _, err := p.SetUpPod(t.Context(), pod); err != nil {
				t.Fatal(err)
			}
			if tc == "default moved" {
				src.publish(nil, b, a)
			} else {
				src.publish(nil, b)
			}
			fe.reset()
			// The teardown's pod differs from the setup's: the cached values must win.
			if err := p.TearDownPod(t.Context(), &Pod{SandboxID: "s1", Name: "other", NetNS: netnsPath}); err != nil {
				t.Fatal(err)
			}
			calls := fe.callsOf("")
			wantSetUpsDel(t, calls)
			if _, ok := calls[1].conf(t)["prevResult"]; !ok {
				t.Fatal("DEL did not get the cached prevResult")
			}
			if got := cacheFiles(t, p); len(got) != 0 {
				t.Fatalf("cache after teardown = %v", got)
			}
		})
	}
}

// wantSetUpsDel checks that calls are the DELs of net-a's chain for pod s1 set up with host port
// 8080, each with the set-up's CNI_ARGS and portmap with its port mappings.
func wantSetUpsDel(t *testing.T, calls []execCall) {
	t.Helper()
	wantCalls(t, calls, "DEL bandwidth net-a eth0", "DEL portmap net-a eth0", "DEL bridge net-a eth0")
	for _, c := range calls {
		if !strings.Contains(c.Args, "K8S_POD_NAME=web-s1;") {
			t.Fatalf("DEL CNI_ARGS = %q; want the set-up's", c.Args)
		}
	}
	assertJSONEqual(t, "portmap DEL runtimeConfig", calls[1].conf(t)["runtimeConfig"],
		`{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}`)
}

func TestTearDownIdempotent(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	ctx := t.Context()

	// Netns gone: DEL runs with an empty CNI_NETNS.
	pod := testPod("s1")
	if _, err := p.SetUpPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	gone := *pod
	gone.NetNS = filepath.Join(t.TempDir(), "gone")
	fe.reset()
	if err := p.TearDownPod(ctx, &gone); err != nil {
		t.Fatal(err)
	}
	if c := fe.callsOf("DEL"); len(c) != 1 || c[0].NetNS != "" {
		t.Fatalf("DEL calls = %+v; want one with an empty netns", c)
	}
	// A path that is not a netns is not passed either.
	notNS := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pod2 := testPod("s2")
	if _, err := p.SetUpPod(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	pod2.NetNS = notNS
	fe.reset()
	if err := p.TearDownPod(ctx, pod2); err != nil {
		t.Fatal(err)
	}
	if c := fe.callsOf("DEL"); len(c) != 1 || c[0].NetNS != "" {
		t.Fatalf("DEL calls = %+v; want one with an empty netns", c)
	}

	// Second teardown and never set up: nothing recorded or cached, so no DEL, and success.
	for _, pd := range []*Pod{pod, testPod("never")} {
		fe.reset()
		if err := p.TearDownPod(ctx, pd); err != nil {
			t.Fatal(err)
		}
		wantCalls(t, fe.callsOf(""))
	}
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache = %v", got)
	}
	if _, err := p.GetPodNetworkStatus(ctx, pod); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("status after teardown: %v; want ErrUnknownSandbox", err)
	}

	// A pod whose name CNI_ARGS cannot carry was never set up; its teardown succeeds, with
	// nothing to delete.
	fe.reset()
	bad := testPod("s4")
	bad.Name = "a;b"
	if err := p.TearDownPod(ctx, bad); err != nil {
		t.Fatalf("TearDownPod of a pod SetUpPod refuses = %v; want success", err)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("calls = %+v", c)
	}

	// No network at all and nothing cached: nothing to do.
	src.publish(errors.New("no config"))
	fe.reset()
	if err := p.TearDownPod(ctx, testPod("s3")); err != nil {
		t.Fatal(err)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("calls = %v", summary(t, c))
	}
}

func TestTearDownFailureKeepsCache(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	pod := testPod("s1")
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	fe.set("ptp", "DEL", reply{err: &types.Error{Code: types.ErrTryAgainLater, Msg: "busy"}})
	err := p.TearDownPod(t.Context(), pod)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater {
		t.Fatalf("TearDownPod = %v; want the plugin's *types.Error", err)
	}
	for _, want := range []string{"pod default/web-s1 (sandbox s1)", `network "net-b"`, `type="ptp"`, "busy"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if got := cacheFiles(t, p); len(got) != 1 {
		t.Fatalf("cache after failed teardown = %v; want the entry kept for a retry", got)
	}
	fe.set("ptp", "DEL", reply{})
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache = %v", got)
	}
}

func TestSetUpPodRollback(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	fe.set("portmap", "ADD", reply{err: &types.Error{Code: types.ErrInternal, Msg: "iptables failed"}})

	pod := testPod("s1")
	_, err := p.SetUpPod(t.Context(), pod)
	var te *types.Error
	if !errors.As(err, &te) || te.Msg != "iptables failed" {
		t.Fatalf("SetUpPod = %v; want the plugin's *types.Error", err)
	}
	for _, want := range []string{"pod default/web-s1 (sandbox s1)", `network "net-a"`, `type="portmap"`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	wantCalls(t, fe.callsOf(""),
		"ADD bridge net-a eth0", "ADD portmap net-a eth0",
		"DEL bandwidth net-a eth0", "DEL portmap net-a eth0", "DEL bridge net-a eth0")
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache after rollback = %v", got)
	}
	// Nothing is left in memory either: the sandbox can be set up again.
	fe.set("portmap", "ADD", reply{})
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatalf("setup after rollback: %v", err)
	}
}

// TestRollbackOutlivesCaller: the caller's context ends while a plugin runs; the rollback
// still runs, with a context of its own.
func TestRollbackOutlivesCaller(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	ctx, cancel := context.WithCancel(t.Context())
	fe.set("portmap", "ADD", reply{block: make(chan struct{}), hook: func(context.Context, execCall) { cancel() }})
	var delCtxErr error
	fe.set("bridge", "DEL", reply{hook: func(ctx context.Context, _ execCall) { delCtxErr = ctx.Err() }})

	_, err := p.SetUpPod(ctx, testPod("s1"))
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("SetUpPod = %v; want context.Canceled, not a timeout", err)
	}
	if !strings.Contains(err.Error(), `interrupted in plugin "portmap"`) {
		t.Fatalf("error %q does not name the plugin", err)
	}
	wantCalls(t, fe.callsOf("DEL"), "DEL bandwidth net-a eth0", "DEL portmap net-a eth0", "DEL bridge net-a eth0")
	if delCtxErr != nil {
		t.Fatalf("rollback DEL ran with an ended context: %v", delCtxErr)
	}
}

func TestSetUpPodTimeout(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src, WithOperationTimeout(300*1e6))
	fe.set("bandwidth", "ADD", reply{block: make(chan struct{})}) // hangs until killed

	_, err := p.SetUpPod(t.Context(), testPod("s1"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SetUpPod = %v; want ErrTimeout and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), `timed out in plugin "bandwidth"`) || !strings.Contains(err.Error(), "(sandbox s1)") {
		t.Fatalf("error %q does not say which plugin timed out for which pod", err)
	}
	// Rolled back despite the expired deadline.
	wantCalls(t, fe.callsOf("DEL"), "DEL bandwidth net-a eth0", "DEL portmap net-a eth0", "DEL bridge net-a eth0")
}

func TestSetUpPodRefusals(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet), network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	if _, err := p.SetUpPod(t.Context(), testPod("up")); err != nil {
		t.Fatal(err)
	}
	fe.reset()
	with := func(f func(*Pod)) *Pod { pd := testPod("s1"); f(pd); return pd }
	tests := []struct {
		name     string
		pod      *Pod
		sentinel error
		want     string
	}{
		{"nil pod", nil, ErrInvalidPod, "nil pod"},
		{"bad name", with(func(p *Pod) { p.Name = "a;b" }), ErrInvalidPod, `name "a;b" contains ';'`},
		{"no netns", with(func(p *Pod) { p.NetNS = "" }), ErrInvalidPod, "no netns path"},
		{"missing netns", with(func(p *Pod) { p.NetNS = "/nonexistent/ns" }), ErrInvalidPod, "netns /nonexistent/ns"},
		{"netns not a netns", with(func(p *Pod) { p.NetNS = "/etc/hostname" }), ErrInvalidPod, "not a network namespace"},
		{"duplicate ifname", with(func(p *Pod) {
			p.ExtraNetworks = []NetworkSelection{{Name: "net-b", Interface: "net1"}, {Name: "net-b", Interface: "net1"}}
		}), ErrInvalidPod, `interface "net1" is already used`},
		{"extra on eth0", with(func(p *Pod) { p.ExtraNetworks = []NetworkSelection{{Name: "net-b", Interface: "eth0"}} }), ErrInvalidPod, `interface "eth0" is already used`},
		{"bad ifname", with(func(p *Pod) { p.ExtraNetworks = []NetworkSelection{{Name: "net-b", Interface: "a/b"}} }), ErrInvalidPod, `interface "a/b"`},
		{"unnamed extra", with(func(p *Pod) { p.ExtraNetworks = []NetworkSelection{{}} }), ErrInvalidPod, "extra network 0: no network name"},
		{"unknown extra", with(func(p *Pod) { p.ExtraNetworks = []NetworkSelection{{Name: "nope"}} }), ErrInvalidPod, `extra network "nope": no valid configuration in /etc/cni/net.d`},
		{"reused sandbox", testPod("up"), ErrInvalidPod, "already set up"},
		{"bad bandwidth", with(func(p *Pod) { p.Annotations = map[string]string{annotationEgressBandwidth: "lots"} }), ErrInvalidPod, "kubernetes.io/egress-bandwidth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.SetUpPod(t.Context(), tt.pod)
			if err == nil {
				t.Fatal("SetUpPod succeeded")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %q does not wrap %v", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if c := fe.callsOf(""); len(c) != 0 {
				t.Fatalf("plugins ran: %v", summary(t, c))
			}
		})
	}
	if got := cacheFiles(t, p); !slices.Equal(got, []string{"net-a-up-eth0"}) {
		t.Fatalf("cache = %v", got)
	}
}

func TestSetUpPodNotReady(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	p := newTestPlugin(t, fe, src)
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); !errors.Is(err, ErrNotReady) {
		t.Fatalf("SetUpPod before any snapshot = %v; want ErrNotReady", err)
	}
	src.publish(errors.New("no valid network in /etc/cni/net.d: 10-a.conflist: bad JSON"))
	_, err := p.SetUpPod(t.Context(), testPod("s1"))
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "10-a.conflist: bad JSON") {
		t.Fatalf("SetUpPod = %v; want ErrNotReady with the reason", err)
	}
}

func TestExtraNetworks(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	c := network(t, `{"cniVersion":"0.4.0","name":"net-c","plugins":[{"type":"macvlan"}]}`)
	src.publish(nil, network(t, otherNet), network(t, bridgeNet), c)
	p := newTestPlugin(t, fe, src)

	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-a"}, {Name: "net-c", Interface: "eth1"}, {Name: "net-b", Interface: "net9"}}
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	// All networks side by side, each chain in order.
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"ADD ptp net-b eth0"},
		"eth2": {"ADD bridge net-a eth2", "ADD portmap net-a eth2", "ADD bandwidth net-a eth2"},
		"eth1": {"ADD macvlan net-c eth1"},
		"net9": {"ADD ptp net-b net9"},
	}, "")
	var got []string
	for _, a := range st.Attachments {
		got = append(got, fmt.Sprintf("%s/%s/%v", a.Network, a.IfName, a.IPs))
	}
	// The chains run side by side: which gets which address varies.
	byIf := map[string]string{}
	for _, a := range st.Attachments {
		if len(a.IPs) != 1 || byIf[a.IfName] != "" {
			t.Fatalf("attachments = %v", got)
		}
		byIf[a.IfName] = a.IPs[0].String()
	}
	want := []string{"net-b/eth0/[" + byIf["eth0"] + "]", "net-a/eth2/[" + byIf["eth2"] + "]", "net-c/eth1/[" + byIf["eth1"] + "]", "net-b/net9/[" + byIf["net9"] + "]"}
	if !slices.Equal(got, want) {
		t.Fatalf("attachments = %v; want %v", got, want)
	}
	if len(st.IPs) != 1 || st.IPs[0].String() != byIf["eth0"] {
		t.Fatalf("pod IPs = %v; want the default network's", st.IPs)
	}

	// Status after a restart comes from the cache, default first.
	p2 := newTestPlugin(t, fe, src, WithCacheDir(p.opts.cacheDir))
	fe.reset()
	st2, err := p2.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, a := range st2.Attachments {
		got = append(got, fmt.Sprintf("%s/%s/%v", a.Network, a.IfName, a.IPs))
	}
	want = []string{"net-b/eth0/[" + byIf["eth0"] + "]", "net-c/eth1/[" + byIf["eth1"] + "]", "net-a/eth2/[" + byIf["eth2"] + "]", "net-b/net9/[" + byIf["net9"] + "]"}
	if !slices.Equal(got, want) {
		t.Fatalf("attachments from cache = %v; want %v", got, want)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("status ran plugins: %v", summary(t, c))
	}

	// Teardown undoes all networks side by side, each chain in reverse.
	if err := p2.TearDownPod(t.Context(), &Pod{SandboxID: "s1"}); err != nil {
		t.Fatal(err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"DEL ptp net-b eth0"},
		"net9": {"DEL ptp net-b net9"},
		"eth1": {"DEL macvlan net-c eth1"},
		"eth2": {"DEL bandwidth net-a eth2", "DEL portmap net-a eth2", "DEL bridge net-a eth2"},
	}, "")
}

func TestExtraNetworkFailureRollsBackAll(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	c := network(t, `{"cniVersion":"1.0.0","name":"net-c","plugins":[{"type":"macvlan"}]}`)
	src.publish(nil, network(t, otherNet), c)
	p := newTestPlugin(t, fe, src)
	fe.set("macvlan", "ADD", reply{err: &types.Error{Code: 7, Msg: "no master"}})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c"}}
	_, err := p.SetUpPod(t.Context(), pod)
	if err == nil || !strings.Contains(err.Error(), `network "net-c"`) {
		t.Fatalf("SetUpPod = %v; want an error naming net-c", err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"ADD ptp net-b eth0", "DEL ptp net-b eth0"},
		"eth1": {"ADD macvlan net-c eth1", "DEL macvlan net-c eth1"},
	}, "")
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache = %v", got)
	}
}

func TestRollbackFailureReported(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	fe.set("ptp", "ADD", reply{err: &types.Error{Code: 5, Msg: "add failed"}})
	fe.set("ptp", "DEL", reply{err: &types.Error{Code: 5, Msg: "del failed"}})
	_, err := p.SetUpPod(t.Context(), testPod("s1"))
	if err == nil || !strings.Contains(err.Error(), "add failed") || !strings.Contains(err.Error(), "rollback") || !strings.Contains(err.Error(), "del failed") {
		t.Fatalf("SetUpPod = %v; want both the ADD and the rollback failure", err)
	}
}

// TestConcurrency: different sandboxes run in parallel; one sandbox's operations never
// overlap.
func TestConcurrency(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)

	// Two sandboxes' ADDs must be in flight at once for either to finish.
	fe.set("bridge", "ADD", reply{hook: allInFlight(t, 2)})
	var wg sync.WaitGroup
	for _, id := range []string{"p1", "p2"} {
		wg.Go(func() {
			if _, err := p.SetUpPod(t.Context(), testPod(id)); err != nil {
				t.Errorf("SetUpPod(%s): %v", id, err)
			}
		})
	}
	wg.Wait()
	fe.set("bridge", "ADD", reply{})

	// Many goroutines hammer one sandbox and several others.
	for g := range 16 {
		wg.Go(func() {
			id := "same"
			if g%2 == 1 {
				id = fmt.Sprintf("other%d", g)
			}
			for range 5 {
				pod := testPod(id)
				if _, err := p.SetUpPod(t.Context(), pod); err != nil && !errors.Is(err, ErrInvalidPod) {
					t.Errorf("SetUpPod(%s): %v", id, err)
				}
				if _, err := p.GetPodNetworkStatus(t.Context(), pod); err != nil && !errors.Is(err, ErrUnknownSandbox) {
					t.Errorf("GetPodNetworkStatus(%s): %v", id, err)
				}
				if err := p.TearDownPod(t.Context(), pod); err != nil {
					t.Errorf("TearDownPod(%s): %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	fe.mu.Lock()
	maxSame := fe.maxInFlight["same"]
	fe.mu.Unlock()
	if maxSame != 1 {
		t.Fatalf("at most %d execs ran at once for one sandbox; want 1", maxSame)
	}
	if got := cacheFiles(t, p); !slices.Equal(got, []string{"net-a-p1-eth0", "net-a-p2-eth0"}) {
		t.Fatalf("cache = %v", got)
	}
}

func TestGetPodNetworkStatus(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	fe.set("ptp", "ADD", reply{out: `{"cniVersion":"1.0.0","interfaces":[{"name":"veth0"},{"name":"eth0","sandbox":"/ns"}],
		"ips":[{"address":"fd00::7/64","interface":1},{"address":"10.88.0.7/16","interface":1},{"address":"10.88.0.1/16","interface":0}]}`})
	st, err := p.SetUpPod(t.Context(), testPod("s1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.88.0.7", "fd00::7"}
	if !slices.Equal(ipStrings(st), want) {
		t.Fatalf("SetUpPod status IPs = %v; want %v", ipStrings(st), want)
	}
	st.IPs[0][0] = 99 // the caller owns its copy

	fe.reset()
	got, err := p.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "s1"})
	if err != nil || !slices.Equal(ipStrings(got), want) {
		t.Fatalf("GetPodNetworkStatus IPs = %v, %v; want %v", ipStrings(got), err, want)
	}
	// After a restart: from the cache.
	p2 := newTestPlugin(t, fe, src, WithCacheDir(p.opts.cacheDir))
	got, err = p2.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "s1"})
	if err != nil || !slices.Equal(ipStrings(got), want) {
		t.Fatalf("GetPodNetworkStatus after restart IPs = %v, %v; want %v", ipStrings(got), err, want)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("status ran plugins: %v", summary(t, c))
	}
	if _, err := p2.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "nope"}); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("unknown sandbox: %v; want ErrUnknownSandbox", err)
	}
	if _, err := p2.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "../x"}); !errors.Is(err, ErrInvalidPod) {
		t.Fatalf("bad sandbox ID: %v; want ErrInvalidPod", err)
	}
}

func TestStatus(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	p := newTestPlugin(t, fe, src)
	if err := p.Status(t.Context()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Status before a scan = %v; want ErrNotReady", err)
	}
	src.publish(errors.New("cni config uninitialized: no network in /etc/cni/net.d"))
	if err := p.Status(t.Context()); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "no network in /etc/cni/net.d") {
		t.Fatalf("Status = %v; want ErrNotReady with the watcher's reason", err)
	}
	src.publish(nil, network(t, otherNet))
	if err := p.Status(t.Context()); err != nil {
		t.Fatalf("Status = %v; want ready", err)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("Status ran plugins: %v", summary(t, c))
	}
}

// TestStatusProbe: a CNI 1.1 network's STATUS answer, polled, makes Status not ready; Status
// itself runs nothing.
func TestStatusProbe(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	s := network(t, statusNet)
	src.publish(nil, s)
	p := newTestPlugin(t, fe, src)

	p.probeStatus(t.Context())
	wantCalls(t, fe.callsOf(""), "STATUS bridge net-s ", "STATUS firewall net-s ")
	if err := p.Status(t.Context()); err != nil {
		t.Fatalf("Status = %v; want ready", err)
	}

	fe.set("firewall", "STATUS", reply{err: &types.Error{Code: types.ErrPluginNotAvailable, Msg: "iptables missing"}})
	p.probeStatus(t.Context())
	fe.reset()
	err := p.Status(t.Context())
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), `plugin "firewall" reports it cannot set up pods (CNI error 50)`) {
		t.Fatalf("Status = %v; want not ready naming the plugin", err)
	}
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("Status ran plugins: %v", summary(t, c))
	}

	// A new configuration of the network is not judged by the old one's answer.
	s2 := network(t, strings.Replace(statusNet, `"type":"bridge"`, `"type":"bridge","mtu":1400`, 1))
	src.publish(nil, s2)
	if err := p.Status(t.Context()); err != nil {
		t.Fatalf("Status with a new config = %v; want ready until probed", err)
	}

	// A 1.0 network is not probed.
	src.publish(nil, network(t, otherNet))
	fe.reset()
	p.probeStatus(t.Context())
	if c := fe.callsOf(""); len(c) != 0 {
		t.Fatalf("probe of a 1.0 network ran plugins: %v", summary(t, c))
	}
}

// TestRunPollsStatus: Run's poller probes at once and on each new snapshot; Close stops it.
func TestRunPollsStatus(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	probed := make(chan struct{}, 16)
	fe.set("firewall", "STATUS", reply{hook: func(context.Context, execCall) { probed <- struct{}{} }})
	p := newTestPlugin(t, fe, src, WithStatusInterval(1e12))
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil {
		t.Fatal("second Run succeeded")
	}
	fe.set("bridge", "STATUS", reply{err: &types.Error{Code: types.ErrLimitedConnectivity, Msg: "degraded"}})
	src.publish(nil, network(t, `{"cniVersion":"1.1.0","name":"net-s","plugins":[{"type":"firewall"},{"type":"bridge"}]}`))
	<-probed
	for p.Status(t.Context()) == nil {
		// The answer is published right after the exec returns.
		select {
		case <-t.Context().Done():
			t.Fatal("Status never turned not ready")
		default:
		}
	}
	if err := p.Status(t.Context()); !strings.Contains(err.Error(), "limited connectivity (CNI error 51)") {
		t.Fatalf("Status = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	src.runs.Wait() // the watcher's Run returned
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Run(t.Context()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
}

func TestCheckPod(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	pod := testPod("s1")
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	src.publish(nil, network(t, otherNet)) // CHECK uses the cached config, not the default
	fe.reset()
	if err := p.CheckPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf(""), "CHECK bridge net-a eth0", "CHECK portmap net-a eth0", "CHECK bandwidth net-a eth0")
	fe.set("portmap", "CHECK", reply{err: &types.Error{Code: 999, Msg: "rule missing"}})
	err := p.CheckPod(t.Context(), pod)
	if err == nil || !strings.Contains(err.Error(), `network "net-a": CHECK: plugin "portmap"`) {
		t.Fatalf("CheckPod = %v; want an error naming network and plugin", err)
	}
	if err := p.CheckPod(t.Context(), testPod("nope")); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("CheckPod(unknown) = %v; want ErrUnknownSandbox", err)
	}
}

func TestLoopbackPlugin(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src, WithLoopbackPlugin())
	pod := testPod("s1")
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf(""), "ADD loopback cni-loopback lo", "ADD ptp net-b eth0")
	if len(st.Attachments) != 1 || st.Attachments[0].Network != "net-b" {
		t.Fatalf("attachments = %+v; want only net-b", st.Attachments)
	}
	fe.reset()
	fe.set("loopback", "DEL", reply{err: &types.Error{Code: 999, Msg: "lo failed"}})
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatalf("TearDownPod with a failing loopback = %v; want success", err)
	}
	wantCalls(t, fe.callsOf(""), "DEL ptp net-b eth0", "DEL loopback cni-loopback lo")

	// A failed setup rolls the loopback back too.
	fe.reset()
	fe.set("loopback", "DEL", reply{})
	fe.set("ptp", "ADD", reply{err: &types.Error{Code: 999, Msg: "no"}})
	if _, err := p.SetUpPod(t.Context(), testPod("s2")); err == nil {
		t.Fatal("SetUpPod succeeded")
	}
	wantCalls(t, fe.callsOf(""), "ADD loopback cni-loopback lo", "ADD ptp net-b eth0", "DEL ptp net-b eth0", "DEL loopback cni-loopback lo")
}

func TestPodCIDRs(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, `{"cniVersion":"1.0.0","name":"net-r","plugins":[{"type":"bridge","capabilities":{"ipRanges":true}}]}`))
	p := newTestPlugin(t, fe, src)
	if err := p.SetPodCIDRs("not-a-cidr"); err == nil {
		t.Fatal("SetPodCIDRs accepted garbage")
	}
	if err := p.SetPodCIDRs("10.88.0.0/16,fd00:88::/64"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, "runtimeConfig", fe.callsOf("ADD")[0].conf(t)["runtimeConfig"],
		`{"ipRanges":[[{"subnet":"10.88.0.0/16"}],[{"subnet":"fd00:88::/64"}]]}`)
	if err := p.SetPodCIDRs(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetUpPod(t.Context(), testPod("s2")); err != nil {
		t.Fatal(err)
	}
	if _, ok := fe.callsOf("ADD")[1].conf(t)["runtimeConfig"]; ok {
		t.Fatal("runtimeConfig passed without pod CIDRs")
	}
}

func TestInlinedList(t *testing.T) {
	n := network(t, otherNet)
	if got := inlinedList(n.Config); got != n.Config {
		t.Fatal("a list holding all its plugins was rebuilt")
	}
	// A list whose plugins came partly from a drop-in directory.
	extra := network(t, `{"cniVersion":"1.0.0","name":"net-b","plugins":[{"type":"portmap","capabilities":{"portMappings":true}}]}`)
	l := *n.Config
	l.Plugins = append(slices.Clone(l.Plugins), extra.Config.Plugins...)
	got := inlinedList(&l)
	if len(got.Plugins) != 2 || got.Plugins[1].Network.Type != "portmap" {
		t.Fatalf("inlined list has plugins %v", got.Plugins)
	}
	assertJSONBytesEqual(t, "inlined bytes", got.Bytes,
		`{"cniVersion":"1.0.0","name":"net-b","loadOnlyInlinedPlugins":true,"plugins":[{"type":"ptp"},{"type":"portmap","capabilities":{"portMappings":true}}]}`)
}

func TestNewOptions(t *testing.T) {
	for _, opts := range [][]Option{
		{WithOperationTimeout(-1)},
		{WithStatusInterval(-1)},
	} {
		if _, err := New(append(opts, withSource(newFakeSource()))...); err == nil {
			t.Errorf("New accepted a bad option")
		}
	}
	p, err := New(withSource(newFakeSource()))
	if err != nil {
		t.Fatal(err)
	}
	if p.opts.confDir != confwatch.DefaultConfDir || p.opts.cacheDir != libcni.CacheDir || p.opts.binDirs[0] != confwatch.DefaultBinDir ||
		p.opts.operationTimeout != DefaultOperationTimeout || p.opts.maxPodNetworks != DefaultMaxPodNetworks {
		t.Fatalf("defaults = %+v", p.opts)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
