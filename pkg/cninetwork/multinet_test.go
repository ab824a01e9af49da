package cninetwork

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// capsNet declares every capability an extra network's attachment may ask for, on two plugins.
const capsNet = `{"cniVersion":"1.0.0","name":"net-caps","plugins":[
	{"type":"bridge","ipam":{"type":"static"},"capabilities":{"ips":true,"mac":true}},
	{"type":"portmap","capabilities":{"portMappings":true}},
	{"type":"bandwidth","args":{"keep":1},"capabilities":{"bandwidth":true}}]}`

// TestExtraNetworkCapabilityArgs: an extra network's plugins get the values its selection
// asks for, each only where declared; the pod's own port mappings and bandwidth stay on the
// default network; cni-args reach every plugin of the selected network as args.cni.
func TestExtraNetworkCapabilityArgs(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet), network(t, capsNet), network(t, otherNet))
	p := newTestPlugin(t, fe, src)

	pod := selectedPod(t, `[
			{"name":"net-caps","namespace":"team","interface":"net1","ips":["10.9.0.5/24"],"mac":"02:00:00:00:00:01",
			 "portMappings":[{"hostPort":9090,"containerPort":90,"protocol":"UDP"}],
			 "bandwidth":{"ingressRate":1000,"ingressBurst":2000},"cni-args":{"foo":"bar"}},
			{"name":"net-b","namespace":"default","ips":["10.9.1.5/24"]}]`)
	pod.Namespace = "team"
	pod.PortMappings = []PortMapping{{Protocol: "tcp", ContainerPort: 80, HostPort: 8080}}
	if err := pod.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	rc := map[string]any{}
	args := map[string]any{}
	for _, c := range fe.callsOf("ADD") {
		conf := c.conf(t)
		rc[c.Plugin+" "+c.IfName] = conf["runtimeConfig"]
		args[c.Plugin+" "+c.IfName] = conf["args"]
	}
	want := map[string]any{
		"bridge eth0":    nil,
		"portmap eth0":   map[string]any{"portMappings": []any{map[string]any{"hostPort": 8080.0, "containerPort": 80.0, "protocol": "tcp"}}},
		"bandwidth eth0": nil,
		"bridge net1":    map[string]any{"ips": []any{"10.9.0.5/24"}, "mac": "02:00:00:00:00:01"},
		"portmap net1":   map[string]any{"portMappings": []any{map[string]any{"hostPort": 9090.0, "containerPort": 90.0, "protocol": "udp"}}},
		"bandwidth net1": map[string]any{"bandwidth": map[string]any{"ingressRate": 1000.0, "ingressBurst": 2000.0}},
		"ptp eth1":       nil, // declares no ips capability
	}
	if !reflect.DeepEqual(rc, want) {
		t.Fatalf("runtimeConfig per plugin:\n  %v\nwant\n  %v", rc, want)
	}
	cni := map[string]any{"foo": "bar"}
	wantArgs := map[string]any{
		"bridge eth0": nil, "portmap eth0": nil, "bandwidth eth0": nil, "ptp eth1": nil,
		"bridge net1": map[string]any{"cni": cni}, "portmap net1": map[string]any{"cni": cni},
		"bandwidth net1": map[string]any{"keep": 1.0, "cni": cni},
	}
	if !reflect.DeepEqual(args, wantArgs) {
		t.Fatalf("args per plugin:\n  %v\nwant\n  %v", args, wantArgs)
	}

	// The teardown runs with the same arguments, from the record.
	fe.reset()
	if err := p.TearDownPod(t.Context(), &Pod{SandboxID: "s1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range fe.callsOf("DEL") {
		conf := c.conf(t)
		if k := c.Plugin + " " + c.IfName; !reflect.DeepEqual(conf["runtimeConfig"], want[k]) || !reflect.DeepEqual(conf["args"], wantArgs[k]) {
			t.Errorf("DEL %s: runtimeConfig %v, args %v; want %v, %v", k, conf["runtimeConfig"], conf["args"], want[k], wantArgs[k])
		}
	}
}

// selectedPod returns a pod in namespace team-a asking for the extra networks of sels, the
// JSON form of the networks annotation.
func selectedPod(t *testing.T, sels string) *Pod {
	t.Helper()
	pod := &Pod{SandboxID: "s1", Name: "web", Namespace: "team-a", UID: "u1", NetNS: netnsPath}
	if err := json.Unmarshal([]byte(sels), &pod.ExtraNetworks); err != nil {
		t.Fatal(err)
	}
	return pod
}

// TestNetworksAnnotationRefusals: a pod whose networks cannot be honoured is refused before
// any plugin runs, naming what is wrong.
func TestNetworksAnnotationRefusals(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet), network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	tests := []struct{ name, sels, want string }{
		{"unknown network", `[{"name":"net-x"}]`, `extra network "net-x": no valid configuration`},
		{"other namespace", `[{"name":"net-b","namespace":"team-b"}]`, `namespace "team-b"`},
		{"eth0", `[{"name":"net-b","interface":"eth0"}]`, `interface "eth0" is already used`},
		{"lo", `[{"name":"net-b","interface":"lo"}]`, `interface "lo" is already used`},
		{"duplicate interface", `[{"name":"net-b","interface":"net1"},{"name":"net-b","namespace":"default","interface":"net1"}]`, `interface "net1" is already used`},
		{"two IPv4 default routes", `[{"name":"net-b","default-route":["10.0.0.1","10.0.0.2"]}]`,
			`default-route 10.0.0.2: the IPv4 default route is already asked of network "net-b"`},
		{"two networks' IPv6 default routes", `[{"name":"net-b","interface":"net1","default-route":["fd00::1"]},{"name":"net-a","interface":"net2","default-route":["10.0.0.1","fd00::2"]}]`,
			`extra network "net-a": default-route fd00::2: the IPv6 default route is already asked of network "net-b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := selectedPod(t, tt.sels)
			if err := p.ValidatePod(pod); !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidatePod = %v; want ErrInvalidPod saying %q", err, tt.want)
			}
			if _, err := p.SetUpPod(t.Context(), pod); !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SetUpPod = %v; want ErrInvalidPod saying %q", err, tt.want)
			}
			if c := fe.callsOf(""); len(c) != 0 {
				t.Fatalf("plugins ran: %v", summary(t, c))
			}
		})
	}
}

// allInFlight returns a hook that returns once n calls have reached it, or fails the test
// when ctx ends first: the n calls must run at once.
func allInFlight(t *testing.T, n int) func(ctx context.Context, c execCall) {
	var arrived sync.WaitGroup
	arrived.Add(n)
	return func(ctx context.Context, c execCall) {
		arrived.Done()
		done := make(chan struct{})
		go func() { arrived.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			t.Errorf("%s %s %s: the other chain never ran alongside", c.Command, c.Plugin, c.IfName)
		}
	}
}

const (
	macvlanNet = `{"cniVersion":"1.0.0","name":"net-c","plugins":[{"type":"macvlan"}]}`
	ipvlanNet  = `{"cniVersion":"1.0.0","name":"net-d","plugins":[{"type":"ipvlan"},{"type":"tuning"}]}`
)

// TestExtraNetworksSideBySide: extra networks' chains run at once, at set-up and teardown;
// the status carries each attachment's MAC and DNS from its result.
func TestExtraNetworksSideBySide(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet), network(t, ipvlanNet))
	p := newTestPlugin(t, fe, src, WithOperationTimeout(time.Minute))
	hook := allInFlight(t, 2)
	fe.set("macvlan", "ADD", reply{hook: hook})
	fe.set("ipvlan", "ADD", reply{hook: hook, out: `{"cniVersion":"1.0.0",
		"interfaces":[{"name":"net2","mac":"02:00:00:00:00:02","sandbox":"/x"}],
		"ips":[{"address":"10.9.0.2/24","interface":0}],"dns":{"nameservers":["10.9.0.53"],"search":["corp"]}}`})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c", Interface: "net1"}, {Name: "net-d", Interface: "net2"}}
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"ADD ptp net-b eth0"},
		"net1": {"ADD macvlan net-c net1"},
		"net2": {"ADD ipvlan net-d net2", "ADD tuning net-d net2"},
	}, "")
	if len(st.Attachments) != 3 {
		t.Fatalf("attachments %+v", st.Attachments)
	}
	if a := st.Attachments[2]; a.Network != "net-d" || a.MAC != "02:00:00:00:00:02" || a.DNS == nil ||
		!slices.Equal(a.DNS.Nameservers, []string{"10.9.0.53"}) || len(a.IPs) != 1 || a.IPs[0].String() != "10.9.0.2" {
		t.Fatalf("net-d attachment %+v; want its result's MAC, DNS and IP", a)
	}
	if st.IPs[0].String() != st.Attachments[0].IPs[0].String() || st.Attachments[0].Network != "net-b" {
		t.Fatalf("pod IPs %v are not the default network's (%+v)", st.IPs, st.Attachments[0])
	}

	fe.reset()
	hook = allInFlight(t, 2)
	fe.set("macvlan", "DEL", reply{hook: hook})
	fe.set("tuning", "DEL", reply{hook: hook})
	if err := p.TearDownPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"DEL ptp net-b eth0"},
		"net1": {"DEL macvlan net-c net1"},
		"net2": {"DEL tuning net-d net2", "DEL ipvlan net-d net2"},
	}, "")
}

// TestExtraNetworkFailureSideBySide: when one extra network fails while another's chain is in
// flight, every attachment is rolled back, and nothing stays recorded or cached.
func TestExtraNetworkFailureSideBySide(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet), network(t, ipvlanNet))
	p := newTestPlugin(t, fe, src, WithOperationTimeout(time.Minute))
	hook := allInFlight(t, 2)
	fe.set("macvlan", "ADD", reply{hook: hook, err: &types.Error{Code: 7, Msg: "no master"}})
	fe.set("ipvlan", "ADD", reply{hook: hook})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c"}, {Name: "net-d"}}
	_, err := p.SetUpPod(t.Context(), pod)
	if err == nil || !strings.Contains(err.Error(), `network "net-c"`) || !strings.Contains(err.Error(), "no master") {
		t.Fatalf("SetUpPod = %v; want net-c's failure", err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"ADD ptp net-b eth0", "DEL ptp net-b eth0"},
		"eth1": {"ADD macvlan net-c eth1", "DEL macvlan net-c eth1"},
		"eth2": {"ADD ipvlan net-d eth2", "ADD tuning net-d eth2", "DEL tuning net-d eth2", "DEL ipvlan net-d eth2"},
	}, "")
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache = %v", got)
	}
	if rec, err := p.records.get("s1"); err != nil || len(rec) != 0 {
		t.Fatalf("record = %v, %v; want none", rec, err)
	}
}

// TestExtraNetworksCheckAndGC: CHECK and GC cover every attachment of a pod, its extra
// networks' too.
func TestExtraNetworksCheckAndGC(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet), network(t, ipvlanNet))
	p := newTestPlugin(t, fe, src, WithStateDir(t.TempDir()))
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c", Interface: "net1"}, {Name: "net-d", Interface: "net2"}}
	if _, err := p.SetUpPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	fe.reset()
	if err := p.CheckPod(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	wantChains(t, fe.callsOf("CHECK"), "", map[string][]string{
		"eth0": {"CHECK ptp net-b eth0"},
		"net1": {"CHECK macvlan net-c net1"},
		"net2": {"CHECK ipvlan net-d net2", "CHECK tuning net-d net2"},
	}, "")

	fe.reset()
	if err := p.GC(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	wantChains(t, fe.callsOf("DEL"), "", map[string][]string{
		"eth0": {"DEL ptp net-b eth0"},
		"net1": {"DEL macvlan net-c net1"},
		"net2": {"DEL tuning net-d net2", "DEL ipvlan net-d net2"},
	}, "")
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache after GC = %v", got)
	}
}

// TestCutOffMultiNetworkSetUpTornDown: a process dies while a pod's extra networks' chains
// run; the next process tears down every attachment of the set-up record, the extra networks'
// included, with the values the selection asked for, though libcni cached none of them.
func TestCutOffMultiNetworkSetUpTornDown(t *testing.T) {
	cacheDir, stateDir := t.TempDir(), t.TempDir()
	fe := newFakeExec()
	src := newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet), network(t, capsNet))
	first := newTestPlugin(t, fe, src, WithCacheDir(cacheDir), WithStateDir(stateDir))

	// Both extra networks' first plugins hang, each once the other has started.
	inFlight := allInFlight(t, 2)
	arrived, hang := make(chan struct{}, 2), make(chan struct{})
	hook := func(ctx context.Context, c execCall) { inFlight(ctx, c); arrived <- struct{}{} }
	fe.set("macvlan", "ADD", reply{block: hang, hook: hook})
	fe.set("bridge", "ADD", reply{block: hang, hook: hook})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c", Interface: "net1"}, {Name: "net-caps", Interface: "net2", IPs: []string{"10.9.0.5/24"}}}
	ctx, cancel := context.WithCancel(t.Context())
	setUp := make(chan error, 1)
	go func() {
		_, err := first.SetUpPod(ctx, pod)
		setUp <- err
	}()
	t.Cleanup(func() { cancel(); close(hang); <-setUp })
	<-arrived
	<-arrived

	second := newTestPlugin(t, fe, src, WithCacheDir(cacheDir), WithStateDir(stateDir))
	fe.reset()
	if err := second.TearDownPod(t.Context(), &Pod{SandboxID: "s1", NetNS: netnsPath}); err != nil {
		t.Fatal(err)
	}
	dels := fe.callsOf("DEL")
	wantChains(t, dels, "", map[string][]string{
		"eth0": {"DEL ptp net-b eth0"},
		"net1": {"DEL macvlan net-c net1"},
		"net2": {"DEL bandwidth net-caps net2", "DEL portmap net-caps net2", "DEL bridge net-caps net2"},
	}, "")
	for _, c := range dels {
		if c.Plugin == "bridge" && !reflect.DeepEqual(c.conf(t)["runtimeConfig"], map[string]any{"ips": []any{"10.9.0.5/24"}}) {
			t.Fatalf("DEL bridge net2: runtimeConfig %v; want the ips asked for", c.conf(t)["runtimeConfig"])
		}
	}
}

// TestDefaultNetworkAlongsideExtra: the default network's chain runs at once with an extra
// network's, yet the status lists the default network first and its IPs are the pod's.
func TestDefaultNetworkAlongsideExtra(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, macvlanNet))
	p := newTestPlugin(t, fe, src, WithOperationTimeout(time.Minute))
	hook := allInFlight(t, 2)
	fe.set("ptp", "ADD", reply{hook: hook})
	fe.set("macvlan", "ADD", reply{hook: hook})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-c"}}
	st, err := p.SetUpPod(t.Context(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Attachments) != 2 || st.Attachments[0].Network != "net-b" || st.Attachments[0].IfName != "eth0" ||
		st.Attachments[1].Network != "net-c" || st.Attachments[1].IfName != "eth1" {
		t.Fatalf("attachments %+v; want net-b on eth0, then net-c on eth1", st.Attachments)
	}
	if !slices.EqualFunc(st.IPs, st.Attachments[0].IPs, func(a, b net.IP) bool { return a.Equal(b) }) || len(st.IPs) != 1 {
		t.Fatalf("pod IPs %v; want the default network's %v", st.IPs, st.Attachments[0].IPs)
	}
	if rec, err := p.records.get("s1"); err != nil || len(rec) != 2 || rec[0].IfName != "eth0" || rec[1].IfName != "eth1" {
		t.Fatalf("record = %v, %v; want eth0 then eth1, in plan order", rec, err)
	}
}

// TestDefaultNetworkFailureRollsBackExtra: the default network fails while an extra network's
// chain succeeded alongside it; both are rolled back, and nothing stays recorded or cached.
func TestDefaultNetworkFailureRollsBackExtra(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet), network(t, ipvlanNet))
	p := newTestPlugin(t, fe, src, WithOperationTimeout(time.Minute), WithStateDir(t.TempDir()))
	hook := allInFlight(t, 2)
	fe.set("ptp", "ADD", reply{hook: hook, err: &types.Error{Code: 11, Msg: "no address left"}})
	fe.set("ipvlan", "ADD", reply{hook: hook})
	pod := testPod("s1")
	pod.ExtraNetworks = []NetworkSelection{{Name: "net-d"}}
	_, err := p.SetUpPod(t.Context(), pod)
	if err == nil || !strings.Contains(err.Error(), `network "net-b"`) || !strings.Contains(err.Error(), "no address left") {
		t.Fatalf("SetUpPod = %v; want net-b's failure", err)
	}
	wantChains(t, fe.callsOf(""), "", map[string][]string{
		"eth0": {"ADD ptp net-b eth0", "DEL ptp net-b eth0"},
		"eth1": {"ADD ipvlan net-d eth1", "ADD tuning net-d eth1", "DEL tuning net-d eth1", "DEL ipvlan net-d eth1"},
	}, "")
	if got := cacheFiles(t, p); len(got) != 0 {
		t.Fatalf("cache = %v", got)
	}
	if rec, err := p.records.get("s1"); err != nil || len(rec) != 0 {
		t.Fatalf("record = %v, %v; want none", rec, err)
	}
	if _, err := p.GetPodNetworkStatus(t.Context(), &Pod{SandboxID: "s1"}); err == nil {
		t.Fatal("status of a pod whose set-up failed: no error")
	}
}

// TestDefaultRoutePlanned: a default-route of one gateway per family, on one network or
// several, is accepted, and its gateways go with that network's attachment alone.
func TestDefaultRoutePlanned(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet), network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	for _, tt := range []struct {
		name, annotation string
		want             [][]string // gateways of each extra network's attachment
	}{
		{"both families on one", `[{"name":"net-b","default-route":["10.0.0.1","fd00::1"]}]`, [][]string{{"10.0.0.1", "fd00::1"}}},
		{"one family each", `[{"name":"net-b","interface":"net1","default-route":["fd00::1"]},{"name":"net-a","interface":"net2"},{"name":"net-b","interface":"net3","default-route":["10.0.0.1"]}]`,
			[][]string{{"fd00::1"}, nil, {"10.0.0.1"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := selectedPod(t, tt.annotation)
			if err := pod.Validate(); err != nil {
				t.Fatal(err)
			}
			plan, err := p.plan(p.Snapshot(), pod)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan[0].defaultRoute) != 0 || len(plan) != 1+len(tt.want) {
				t.Fatalf("plan %+v; want no default-route on the default network and %d extra networks", plan, len(tt.want))
			}
			for i, want := range tt.want {
				var got []string
				for _, gw := range plan[1+i].defaultRoute {
					got = append(got, gw.String())
				}
				if !slices.Equal(got, want) {
					t.Errorf("extra network %d: default-route %v; want %v", i, got, want)
				}
			}
		})
	}
}

// TestPodNetworksBounded: one pod cannot escape the admission bounds or the cap on its
// networks. Over the cap (16 by default) it is refused before any plugin runs, naming the cap;
// under a raised cap, a pod on 100 networks never runs more ADD chains at once than the ADD
// bound, nor more DEL chains than the DEL bound at its rollback and teardown, and still runs
// them side by side up to the bound.
func TestPodNetworksBounded(t *testing.T) {
	extra := make([]NetworkSelection, 99)
	for i := range extra {
		extra[i] = NetworkSelection{Name: "net-c"} // the same network, 99 times
	}
	limits := WithAdmission(AdmissionLimits{Add: 2, Del: 2})

	t.Run("over the cap", func(t *testing.T) {
		fe, src := newFakeExec(), newFakeSource()
		src.publish(nil, network(t, otherNet), network(t, macvlanNet))
		p := newTestPlugin(t, fe, src, limits)
		pod := testPod("s1")
		pod.ExtraNetworks = extra
		const want = "asks for 100 networks, the default one included; this node allows at most 16 per pod"
		if err := p.ValidatePod(pod); !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), want) {
			t.Fatalf("ValidatePod = %v; want ErrInvalidPod saying %q", err, want)
		}
		if _, err := p.SetUpPod(t.Context(), pod); !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), want) {
			t.Fatalf("SetUpPod = %v; want ErrInvalidPod saying %q", err, want)
		}
		if c := fe.callsOf(""); len(c) != 0 {
			t.Fatalf("plugins ran for a pod over the cap: %d calls", len(c))
		}
		pod.ExtraNetworks = extra[:15]
		if err := p.ValidatePod(pod); err != nil {
			t.Fatalf("ValidatePod of a pod on 16 networks = %v; want nil", err)
		}
	})

	t.Run("within a raised cap", func(t *testing.T) {
		fe, src := newFakeExec(), newFakeSource()
		src.publish(nil, network(t, otherNet), network(t, macvlanNet))
		p := newTestPlugin(t, fe, src, limits, WithMaxPodNetworks(100))
		fe.set("macvlan", "ADD", reply{sleep: 20 * time.Millisecond})
		fe.set("macvlan", "DEL", reply{sleep: 20 * time.Millisecond})
		pod := testPod("s1")
		pod.ExtraNetworks = extra
		st, err := p.SetUpPod(t.Context(), pod)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Attachments) != 100 {
			t.Fatalf("%d attachments; want 100", len(st.Attachments))
		}
		if err := p.TearDownPod(t.Context(), pod); err != nil {
			t.Fatal(err)
		}

		// A pod whose extra networks all fail is rolled back, its DEL chains bounded too.
		fe.set("macvlan", "ADD", reply{err: errors.New("no parent")})
		pod = testPod("s2")
		pod.ExtraNetworks = extra
		if _, err := p.SetUpPod(t.Context(), pod); err == nil || errors.Is(err, ErrRollbackFailed) {
			t.Fatalf("SetUpPod with failing networks = %v; want an error, rolled back", err)
		}
		fe.mu.Lock()
		add, del := fe.maxRunningCmd["ADD"], fe.maxRunningCmd["DEL"]
		fe.mu.Unlock()
		if add != 2 || del != 2 {
			t.Fatalf("at most %d ADD and %d DEL chains ran at once; want exactly the bounds, 2 and 2", add, del)
		}
		if ids, err := p.records.list(); err != nil || len(ids) != 0 {
			t.Fatalf("records left: %v, %v", ids, err)
		}
	})
}
