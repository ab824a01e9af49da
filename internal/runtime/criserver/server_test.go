//go:build linux

package criserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/internal/testing/roottest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/cnishim/cnishim/pkg/npwg"
	"github.com/containernetworking/cni/pkg/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// fakeNetwork records the calls the server makes and answers as configured.
type fakeNetwork struct {
	mu        sync.Mutex
	notReady  error
	setUpErr  error
	tearErr   error
	setUpHook func(pod *cninetwork.Pod) // runs inside SetUpPod, without mu held
	snap      *confwatch.Snapshot
	nextIP    int
	setUps    []*cninetwork.Pod
	tearDowns []*cninetwork.Pod
	checks    []*cninetwork.Pod
	checkErr  error
	gcs       [][]string
	cidrs     []string
	netnsSeen []bool // per SetUpPod: was the pod's netns a mounted namespace
}

func (f *fakeNetwork) Status(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}

func (f *fakeNetwork) Snapshot() *confwatch.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

// ValidatePod checks the pod's extra networks against the fake's snapshot (the cri adapter has
// validated the rest).
func (f *fakeNetwork) ValidatePod(pod *cninetwork.Pod) error {
	snap := f.Snapshot()
	for _, x := range pod.ExtraNetworks {
		if snap == nil || snap.Network(x.Name) == nil {
			return fmt.Errorf("%w: %s: extra network %q: no valid configuration", cninetwork.ErrInvalidPod, pod, x.Name)
		}
	}
	return nil
}

func (f *fakeNetwork) CheckPod(ctx context.Context, pod *cninetwork.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, pod)
	return f.checkErr
}

func (f *fakeNetwork) SetUpPod(ctx context.Context, pod *cninetwork.Pod) (*cninetwork.PodNetworkStatus, error) {
	if f.setUpHook != nil {
		f.setUpHook(pod)
	}
	ok, _ := netns.IsNetNS(pod.NetNS)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setUps = append(f.setUps, pod)
	f.netnsSeen = append(f.netnsSeen, ok)
	if f.setUpErr != nil {
		return nil, f.setUpErr
	}
	f.nextIP++
	ip4 := net.IPv4(10, 88, 0, byte(f.nextIP+1))
	ip6 := net.ParseIP(fmt.Sprintf("fd00::%d", f.nextIP+1))
	return &cninetwork.PodNetworkStatus{
		IPs:         []net.IP{ip4, ip6},
		Attachments: []cninetwork.AttachmentStatus{{Network: "net1", IfName: "eth0", IPs: []net.IP{ip4, ip6}}},
	}, nil
}

func (f *fakeNetwork) TearDownPod(ctx context.Context, pod *cninetwork.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tearDowns = append(f.tearDowns, pod)
	return f.tearErr
}

func (f *fakeNetwork) GetPodNetworkStatus(ctx context.Context, pod *cninetwork.Pod) (*cninetwork.PodNetworkStatus, error) {
	return &cninetwork.PodNetworkStatus{Attachments: []cninetwork.AttachmentStatus{
		{Network: "net1", IfName: "eth0", Default: true},
		{Network: "net2", IfName: "net1", IPs: []net.IP{net.IPv4(10, 9, 0, 2)}, MAC: "02:00:00:00:00:02", DNS: &types.DNS{Nameservers: []string{"10.9.0.53"}}},
	}}, nil
}

func (f *fakeNetwork) GC(ctx context.Context, validFn func(context.Context) ([]string, error)) error {
	valid, err := validFn(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gcs = append(f.gcs, slices.Clone(valid))
	return nil
}

func (f *fakeNetwork) SetPodCIDRs(cidrs ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cidrs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return err
		}
	}
	f.cidrs = cidrs
	return nil
}

func (f *fakeNetwork) calls() (setUps, tearDowns int, gcs [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.setUps), len(f.tearDowns), slices.Clone(f.gcs)
}

type testEnv struct {
	net      *fakeNetwork
	store    *sandboxstore.Store
	srv      *Server
	rt       runtimeapi.RuntimeServiceClient
	img      runtimeapi.ImageServiceClient
	conn     *grpc.ClientConn
	stateDir string
	netnsDir string
}

// newEnv serves a Server with a fake network on a unix socket in a temporary directory.
func newEnv(t *testing.T, fn *fakeNetwork) *testEnv {
	t.Helper()
	roottest.Require(t)
	dir := t.TempDir()
	e := &testEnv{net: fn, stateDir: dir, netnsDir: filepath.Join(dir, "netns")}
	e.start(t)
	return e
}

// start (re)opens the store and serves a new Server over the same state directory.
func (e *testEnv) start(t *testing.T) {
	t.Helper()
	store, err := sandboxstore.Open(filepath.Join(e.stateDir, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Network: e.net, Store: store, NetNSDir: e.netnsDir, Version: "test",
		StatusInfo: func() map[string]any { return map[string]any{"admission": map[string]int{"maxParallelSetups": 2}} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Recover(t.Context()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	sock := filepath.Join(e.stateDir, fmt.Sprintf("cri-%d.sock", len(e.net.gcs)))
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions(klog.Background())...)
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
	})
	e.store, e.srv, e.conn = store, srv, conn
	e.rt = runtimeapi.NewRuntimeServiceClient(conn)
	e.img = runtimeapi.NewImageServiceClient(conn)
	t.Cleanup(func() {
		// Leave no namespace mounted, whatever the test did.
		ms, _ := netns.Mounted(e.netnsDir)
		for _, m := range ms {
			_ = netns.Remove(m)
		}
	})
}

func podConfig(name string, attempt uint32, labels map[string]string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns1", Uid: "uid-" + name, Attempt: attempt},
		Labels:       labels,
		Annotations:  map[string]string{"note": name},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080}},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/" + name},
	}
}

// withAnnotation returns cfg with the annotation key set to value.
func withAnnotation(cfg *runtimeapi.PodSandboxConfig, key, value string) *runtimeapi.PodSandboxConfig {
	cfg.Annotations[key] = value
	return cfg
}

func (e *testEnv) run(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := e.rt.RunPodSandbox(t.Context(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	return resp.GetPodSandboxId()
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
	if !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error message %q does not say %q", status.Convert(err).Message(), msg)
	}
}

func TestSandboxLifecycle(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	ctx := t.Context()
	id := e.run(t, podConfig("web", 0, map[string]string{"app": "web"}))
	if len(id) != 64 {
		t.Fatalf("sandbox ID %q is not 64 hex characters", id)
	}
	nsPath := filepath.Join(e.netnsDir, id)
	if ok, err := netns.IsNetNS(nsPath); !ok {
		t.Fatalf("sandbox netns %s not mounted: %v", nsPath, err)
	}
	fn := e.net
	pod := fn.setUps[0]
	if pod.SandboxID != id || pod.NetNS != nsPath || pod.Name != "web" || pod.Namespace != "ns1" || pod.UID != "uid-web" ||
		pod.PortMappings[0].HostPort != 8080 || pod.CgroupParent != "/kubepods/web" || !fn.netnsSeen[0] {
		t.Fatalf("plugin got pod %+v (netns mounted: %v)", pod, fn.netnsSeen[0])
	}

	// Status by a unique prefix, verbose.
	st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id[:12], Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	s := st.GetStatus()
	if s.GetId() != id || s.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || s.GetCreatedAt() == 0 ||
		s.GetMetadata().GetName() != "web" || s.GetLabels()["app"] != "web" || s.GetAnnotations()["note"] != "web" ||
		s.GetNetwork().GetIp() != "10.88.0.2" || s.GetNetwork().GetAdditionalIps()[0].GetIp() != "fd00::2" ||
		s.GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_POD {
		t.Fatalf("status = %v", s)
	}
	var info SandboxInfo
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("verbose info %q: %v", st.GetInfo()["info"], err)
	}
	var infoCfg runtimeapi.PodSandboxConfig
	if err := protojson.Unmarshal(info.Config, &infoCfg); err != nil {
		t.Fatalf("verbose info config %s: %v", info.Config, err)
	}
	if info.NetNSPath != nsPath || info.State != "ready" || len(info.Attachments) != 2 || infoCfg.GetMetadata().GetName() != "web" {
		t.Fatalf("verbose info = %+v", info)
	}
	wantStatus := []NetworkStatus{
		{Name: "net1", Interface: "eth0", Default: true},
		{Name: "net2", Interface: "net1", IPs: []string{"10.9.0.2"}, MAC: "02:00:00:00:00:02", DNS: &NetworkStatusDNS{Nameservers: []string{"10.9.0.53"}}},
	}
	if !reflect.DeepEqual(info.NetworkStatus, wantStatus) {
		t.Fatalf("verbose network status = %+v, want %+v", info.NetworkStatus, wantStatus)
	}

	// Stop, twice: the second does nothing.
	for i := range 2 {
		if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	if _, tears, _ := fn.calls(); tears != 1 {
		t.Fatalf("%d teardowns after two stops, want 1", tears)
	}
	if fn.tearDowns[0].NetNS != nsPath {
		t.Fatalf("teardown got netns %q, want %q", fn.tearDowns[0].NetNS, nsPath)
	}
	if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("netns %s still there after stop: %v", nsPath, err)
	}
	st, err = e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.GetStatus().GetNetwork() != nil {
		t.Fatalf("status after stop = %v", st.GetStatus())
	}

	// Remove, twice: removing a removed sandbox succeeds.
	for i := range 2 {
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if _, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("status after remove: %v, want NotFound", err)
	}
	// Stopping a removed sandbox succeeds: nothing is left to reclaim.
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("stop after remove: %v", err)
	}
	if len(e.store.List()) != 0 {
		t.Fatalf("records left: %v", e.store.List())
	}

	// The name is free again.
	e.run(t, podConfig("web", 0, nil))
}

func TestRemoveReadySandboxTearsDown(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	id := e.run(t, podConfig("web", 0, nil))
	if _, err := e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, tears, _ := e.net.calls(); tears != 1 {
		t.Fatalf("%d teardowns, want 1", tears)
	}
	if ms, _ := netns.Mounted(e.netnsDir); len(ms) != 0 || len(e.store.List()) != 0 {
		t.Fatalf("left: netns %v, records %v", ms, e.store.List())
	}
}

func TestRunPodSandboxFailures(t *testing.T) {
	tests := []struct {
		name      string
		net       *fakeNetwork
		cfg       *runtimeapi.PodSandboxConfig
		code      codes.Code
		msg       string
		wantTears int
		wantKept  bool // record kept NOTREADY because the rollback failed
	}{
		{
			name: "malformed networks annotation", net: &fakeNetwork{},
			cfg: withAnnotation(podConfig("a", 0, nil), npwg.NetworksAnnotation, "net2,,"), code: codes.InvalidArgument, msg: "empty element",
		},
		{
			name: "unknown extra network", net: &fakeNetwork{},
			cfg: withAnnotation(podConfig("a", 0, nil), npwg.NetworksAnnotation, "net2@net1"), code: codes.InvalidArgument, msg: `extra network "net2": no valid configuration`,
		},
		{
			name: "extra network of another namespace", net: &fakeNetwork{},
			cfg: withAnnotation(podConfig("a", 0, nil), npwg.NetworksAnnotation, "other/net2"), code: codes.InvalidArgument, msg: `namespace "other"`,
		},
		{
			name: "network not ready", net: &fakeNetwork{notReady: fmt.Errorf("%w: no valid config in /etc/cni/net.d", cninetwork.ErrNotReady)},
			cfg: podConfig("a", 0, nil), code: codes.FailedPrecondition, msg: "no valid config in /etc/cni/net.d",
		},
		{
			name: "set-up fails", net: &fakeNetwork{setUpErr: errors.New(`network "net1": plugin bridge: boom`)},
			cfg: podConfig("a", 0, nil), code: codes.Internal, msg: "plugin bridge: boom", wantTears: 0,
		},
		{
			name: "invalid pod", net: &fakeNetwork{setUpErr: fmt.Errorf("%w: name has ';'", cninetwork.ErrInvalidPod)},
			cfg: podConfig("a", 0, nil), code: codes.InvalidArgument, msg: "name has ';'", wantTears: 0,
		},
		{
			name: "plugin timeout", net: &fakeNetwork{setUpErr: fmt.Errorf("plugin bridge: %w", cninetwork.ErrTimeout)},
			cfg: podConfig("a", 0, nil), code: codes.DeadlineExceeded, msg: "timed out", wantTears: 0,
		},
		{
			name: "set-up and rollback fail", net: &fakeNetwork{setUpErr: fmt.Errorf("add boom; %w: del boom", cninetwork.ErrRollbackFailed), tearErr: errors.New("del boom")},
			cfg: podConfig("a", 0, nil), code: codes.Internal, msg: "del boom", wantTears: 1, wantKept: true,
		},
		{
			name: "no metadata", net: &fakeNetwork{}, cfg: &runtimeapi.PodSandboxConfig{},
			code: codes.InvalidArgument, msg: "no metadata name",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.net)
			_, err := e.rt.RunPodSandbox(t.Context(), &runtimeapi.RunPodSandboxRequest{Config: tc.cfg})
			wantCode(t, err, tc.code, tc.msg)
			if tc.code == codes.InvalidArgument && tc.net.setUpErr == nil && len(tc.net.setUps) != 0 {
				t.Fatalf("an invalid pod reached the plugin: %+v", tc.net.setUps)
			}
			if _, tears, _ := tc.net.calls(); tears != tc.wantTears {
				t.Fatalf("%d teardowns, want %d", tears, tc.wantTears)
			}
			// A sandbox whose rollback failed keeps its namespace for the retried teardown.
			if ms, _ := netns.Mounted(e.netnsDir); (len(ms) == 1) != tc.wantKept || len(ms) > 1 {
				t.Fatalf("netns mounted: %v; want kept: %v", ms, tc.wantKept)
			}
			recs := e.store.List()
			if !tc.wantKept {
				if len(recs) != 0 {
					t.Fatalf("records left: %v", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].State != sandboxstore.StateCreating || !strings.Contains(recs[0].Reason, "del boom") {
				t.Fatalf("records = %+v, want one still to tear down, saying why", recs)
			}
			st, err := e.rt.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: recs[0].ID})
			if err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Fatalf("status of the kept sandbox = %v, %v; want NOTREADY", st.GetStatus(), err)
			}
			// Once the teardown works again, removal releases it.
			tc.net.mu.Lock()
			tc.net.tearErr = nil
			tc.net.mu.Unlock()
			if _, err := e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: recs[0].ID}); err != nil {
				t.Fatal(err)
			}
			if len(e.store.List()) != 0 {
				t.Fatal("record left after remove")
			}
			if _, tears, _ := tc.net.calls(); tears != 2 {
				t.Fatalf("%d teardowns, want 2: the removal must retry the failed rollback", tears)
			}
			tc.net.mu.Lock()
			retried := tc.net.tearDowns[1]
			tc.net.mu.Unlock()
			if retried.NetNS == "" {
				t.Fatal("the retried teardown ran without the sandbox's netns")
			}
			if ms, _ := netns.Mounted(e.netnsDir); len(ms) != 0 {
				t.Fatalf("netns left mounted after remove: %v", ms)
			}
		})
	}
}

func TestNameReserved(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	id := e.run(t, podConfig("web", 0, nil))
	_, err := e.rt.RunPodSandbox(t.Context(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("web", 0, nil)})
	wantCode(t, err, codes.AlreadyExists, id)
	// Another attempt is another name.
	e.run(t, podConfig("web", 1, nil))
}

func TestHostNetworkSandbox(t *testing.T) {
	e := newEnv(t, &fakeNetwork{notReady: fmt.Errorf("%w: nothing", cninetwork.ErrNotReady)})
	cfg := podConfig("host", 0, nil)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	id := e.run(t, cfg)
	st, err := e.rt.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY ||
		st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		t.Fatalf("status = %v", st.GetStatus())
	}
	if _, err := e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if ups, tears, _ := e.net.calls(); ups != 0 || tears != 0 {
		t.Fatalf("plugin called for a host-network sandbox: %d set-ups, %d teardowns", ups, tears)
	}
}

func TestListPodSandbox(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	a := e.run(t, podConfig("a", 0, map[string]string{"app": "web", "tier": "front"}))
	b := e.run(t, podConfig("b", 0, map[string]string{"app": "web"}))
	c := e.run(t, podConfig("c", 0, map[string]string{"app": "db"}))
	if _, err := e.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: c}); err != nil {
		t.Fatal(err)
	}
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	tests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"no filter", nil, []string{a, b, c}},
		{"full ID", &runtimeapi.PodSandboxFilter{Id: b}, []string{b}},
		{"ID prefix", &runtimeapi.PodSandboxFilter{Id: a[:13]}, []string{a}},
		{"unknown ID", &runtimeapi.PodSandboxFilter{Id: "zzz"}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{a, b}},
		{"notready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{c}},
		{"one label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, []string{a, b}},
		{"two labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web", "tier": "front"}}, []string{a}},
		{"label and state", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}, State: ready}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.rt.ListPodSandbox(t.Context(), &runtimeapi.ListPodSandboxRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range resp.GetItems() {
				got = append(got, it.GetId())
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			// The streaming form answers the same.
			stream, err := e.rt.StreamPodSandboxes(t.Context(), &runtimeapi.StreamPodSandboxesRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var streamed []string
			for {
				m, err := stream.Recv()
				if err != nil {
					break
				}
				for _, it := range m.GetPodSandboxes() {
					streamed = append(streamed, it.GetId())
				}
			}
			slices.Sort(streamed)
			if !slices.Equal(streamed, want) {
				t.Fatalf("streamed %v, want %v", streamed, want)
			}
		})
	}
}

func TestAmbiguousPrefix(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	// Two records whose IDs share a prefix, written straight into the store.
	for i, id := range []string{"ab" + strings.Repeat("1", 62), "ab" + strings.Repeat("2", 62)} {
		rec := sandboxstore.Record{ID: id, State: sandboxstore.StateNotReady, CreatedAt: 1, Config: podConfig(fmt.Sprint("p", i), 0, nil)}
		if err := e.store.Create(rec); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.rt.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "ab"})
	wantCode(t, err, codes.InvalidArgument, "ambiguous")
	_, err = e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "ab"})
	wantCode(t, err, codes.InvalidArgument, "ambiguous")
	_, err = e.rt.ListPodSandbox(t.Context(), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: "ab"}})
	wantCode(t, err, codes.InvalidArgument, "ambiguous")
	for _, tc := range []struct {
		filter string
		want   int
	}{{"ab1", 1}, {"ab" + strings.Repeat("2", 62), 1}, {"abc", 0}} {
		resp, err := e.rt.ListPodSandbox(t.Context(), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: tc.filter}})
		if err != nil || len(resp.GetItems()) != tc.want {
			t.Fatalf("ListPodSandbox(id %s) = %v, %v; want %d items", tc.filter, resp.GetItems(), err, tc.want)
		}
	}
	if _, err := e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "ab1"}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.store.List()); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}

func TestUnsupportedRPCs(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	ctx := t.Context()
	const msg = "cnishim runs network sandboxes only"
	tests := []struct {
		rpc  string
		call func() error
	}{
		{"CreateContainer", func() error {
			_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x"})
			return err
		}},
		{"StartContainer", func() error { _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{}); return err }},
		{"ExecSync", func() error { _, err := e.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{}); return err }},
		{"ListMetricDescriptors", func() error {
			_, err := e.rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
			return err
		}},
		{"GetContainerEvents", func() error {
			s, err := e.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"PullImage", func() error { _, err := e.img.PullImage(ctx, &runtimeapi.PullImageRequest{}); return err }},
		{"RemoveImage", func() error { _, err := e.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{}); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.rpc, func(t *testing.T) {
			wantCode(t, tc.call(), codes.Unimplemented, msg+": "+tc.rpc+" is not supported")
		})
	}
}

func TestVersionAndStatus(t *testing.T) {
	fn := &fakeNetwork{
		notReady: fmt.Errorf("%w: no network config found in /etc/cni/net.d", cninetwork.ErrNotReady),
		snap: &confwatch.Snapshot{
			Generation: 3,
			Skipped:    []confwatch.Skipped{{File: "/etc/cni/net.d/10-bad.conf", Reason: errors.New("invalid JSON")}},
			Err:        errors.New("cni config uninitialized"),
		},
	}
	e := newEnv(t, fn)
	ctx := t.Context()
	v, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.GetRuntimeName() != "cnishim" || v.GetRuntimeVersion() != "test" || v.GetRuntimeApiVersion() != "v1" {
		t.Fatalf("Version = %v, %v", v, err)
	}

	cond := func(st *runtimeapi.StatusResponse, typ string) *runtimeapi.RuntimeCondition {
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == typ {
				return c
			}
		}
		t.Fatalf("no %s condition in %v", typ, st)
		return nil
	}
	st, err := e.rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cond(st, runtimeapi.RuntimeReady).GetStatus() {
		t.Fatal("RuntimeReady false")
	}
	nc := cond(st, runtimeapi.NetworkReady)
	if nc.GetStatus() || nc.GetReason() != "NetworkPluginNotReady" || !strings.Contains(nc.GetMessage(), "no network config found") {
		t.Fatalf("NetworkReady = %v", nc)
	}
	if st.GetInfo()["lastLoadError"] != "cni config uninitialized" || !strings.Contains(st.GetInfo()["skipped"], "10-bad.conf") ||
		st.GetInfo()["admission"] != `{"maxParallelSetups":2}` {
		t.Fatalf("info = %v", st.GetInfo())
	}
	if _, ok := st.GetInfo()["config"]; ok {
		t.Fatal("config reported while no network is chosen")
	}

	fn.mu.Lock()
	fn.notReady = nil
	fn.snap = &confwatch.Snapshot{Generation: 4, Default: &confwatch.Network{
		File: "/etc/cni/net.d/10-net.conflist", Name: "net1", CNIVersion: "1.0.0",
		PluginTypes: []string{"bridge", "portmap"}, Capabilities: []string{"portMappings"},
	}}
	fn.mu.Unlock()
	st, err = e.rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cond(st, runtimeapi.NetworkReady).GetStatus() {
		t.Fatal("NetworkReady false once the network is ready")
	}
	var ni NetworkInfo
	if err := json.Unmarshal([]byte(st.GetInfo()["config"]), &ni); err != nil {
		t.Fatal(err)
	}
	if ni.Name != "net1" || ni.File != "/etc/cni/net.d/10-net.conflist" || ni.CNIVersion != "1.0.0" ||
		!slices.Equal(ni.Plugins, []string{"bridge", "portmap"}) || !slices.Equal(ni.Capabilities, []string{"portMappings"}) {
		t.Fatalf("config info = %+v", ni)
	}
	// Not verbose: no info.
	st, err = e.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil || len(st.GetInfo()) != 0 {
		t.Fatalf("non-verbose Status = %v, %v", st, err)
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	req := func(cidr string) *runtimeapi.UpdateRuntimeConfigRequest {
		return &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
			NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}}
	}
	if _, err := e.rt.UpdateRuntimeConfig(t.Context(), req("10.1.0.0/24, fd00:1::/64")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.net.cidrs, []string{"10.1.0.0/24", "fd00:1::/64"}) {
		t.Fatalf("plugin got CIDRs %v", e.net.cidrs)
	}
	if _, err := e.rt.UpdateRuntimeConfig(t.Context(), req("")); err != nil || len(e.net.cidrs) != 2 {
		t.Fatalf("empty CIDR: %v, CIDRs now %v", err, e.net.cidrs)
	}
	_, err := e.rt.UpdateRuntimeConfig(t.Context(), req("not-a-cidr"))
	wantCode(t, err, codes.InvalidArgument, "not-a-cidr")
}

func TestRecover(t *testing.T) {
	fn := &fakeNetwork{}
	e := newEnv(t, fn)
	ready := e.run(t, podConfig("ready", 0, nil))
	lost := e.run(t, podConfig("lost", 0, nil))
	stopped := e.run(t, podConfig("stopped", 0, nil))
	if _, err := e.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: stopped}); err != nil {
		t.Fatal(err)
	}

	// What a crash leaves: a record still "creating" whose namespace exists, one whose
	// namespace was never created, a ready sandbox whose namespace is gone (a reboot), and a
	// namespace nobody owns.
	cutOff := sandboxstore.Record{ID: sandboxstore.NewID(), State: sandboxstore.StateCreating, CreatedAt: 5, Config: podConfig("cut", 0, nil)}
	cutOff.NetNSPath = filepath.Join(e.netnsDir, cutOff.ID)
	if err := e.store.Create(cutOff); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.Create(e.netnsDir, cutOff.ID); err != nil {
		t.Fatal(err)
	}
	early := sandboxstore.Record{ID: sandboxstore.NewID(), State: sandboxstore.StateCreating, CreatedAt: 6, Config: podConfig("early", 0, nil)}
	early.NetNSPath = filepath.Join(e.netnsDir, early.ID)
	if err := e.store.Create(early); err != nil {
		t.Fatal(err)
	}
	if err := netns.Remove(filepath.Join(e.netnsDir, lost)); err != nil {
		t.Fatal(err)
	}
	orphan, err := netns.Create(e.netnsDir, sandboxstore.NewID())
	if err != nil {
		t.Fatal(err)
	}

	_, tearsBefore, _ := fn.calls()
	e.start(t) // a new server over the same state: it recovers
	_, tearsAfter, gcs := fn.calls()

	if tearsAfter-tearsBefore != 3 {
		t.Fatalf("%d teardowns at recovery, want 3 (cut off, never created, lost)", tearsAfter-tearsBefore)
	}
	for _, p := range fn.tearDowns[tearsBefore:] {
		want := ""
		if p.SandboxID == cutOff.ID {
			want = cutOff.NetNSPath
		}
		if p.NetNS != want {
			t.Errorf("teardown of %s got netns %q, want %q", p.Name, p.NetNS, want)
		}
	}
	states := map[string]runtimeapi.PodSandboxState{}
	resp, err := e.rt.ListPodSandbox(t.Context(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range resp.GetItems() {
		states[it.GetId()] = it.GetState()
	}
	wantStates := map[string]runtimeapi.PodSandboxState{
		ready:     runtimeapi.PodSandboxState_SANDBOX_READY,
		lost:      runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
		stopped:   runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
		cutOff.ID: runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
		early.ID:  runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
	}
	if fmt.Sprint(states) != fmt.Sprint(wantStates) {
		t.Fatalf("states after recovery = %v, want %v", states, wantStates)
	}
	for id, reason := range map[string]string{cutOff.ID: ReasonSetUpCutOff, lost: ReasonNetNSLost} {
		rec, err := e.store.Get(id)
		if err != nil || rec.Reason != reason {
			t.Fatalf("record %s: %+v, %v; want reason %q", id, rec, err, reason)
		}
	}
	ms, _ := netns.Mounted(e.netnsDir)
	if !slices.Equal(ms, []string{filepath.Join(e.netnsDir, ready)}) {
		t.Fatalf("mounted after recovery: %v, want only the ready sandbox's", ms)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan netns %s not removed: %v", orphan, err)
	}
	if len(gcs) != 2 || !slices.Equal(gcs[1], []string{ready}) {
		t.Fatalf("GC calls = %v, want the second with only %s valid", gcs, ready)
	}

	// Every sandbox can now be stopped and removed.
	for id := range wantStates {
		if _, err := e.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if ms, _ := netns.Mounted(e.netnsDir); len(ms) != 0 || len(e.store.List()) != 0 {
		t.Fatalf("left: netns %v, records %v", ms, e.store.List())
	}
	if entries, _ := os.ReadDir(e.netnsDir); len(entries) != 0 {
		t.Fatalf("files left in the netns dir: %v", entries)
	}
}

func TestGCDuringSetUp(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	fn := &fakeNetwork{}
	e := newEnv(t, fn)
	fn.setUpHook = func(*cninetwork.Pod) {
		close(entered)
		<-release
	}
	idc := make(chan string, 1)
	go func() {
		resp, err := e.rt.RunPodSandbox(context.WithoutCancel(t.Context()), &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow", 0, nil)})
		if err != nil {
			t.Error(err)
		}
		idc <- resp.GetPodSandboxId()
	}()
	<-entered
	// GC runs while the set-up is in flight, without waiting for it, and counts the sandbox
	// being set up as valid.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard: GC must not wait
	defer cancel()
	valid, err := CallGC(ctx, e.conn)
	close(release)
	id := <-idc
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(valid, []string{id}) {
		t.Fatalf("GC valid set = %v, want [%s], the sandbox being set up", valid, id)
	}
}

// TestRunPodSandboxExtraNetworks: the networks annotation reaches the plugin as the pod's
// extra networks, with what each selection asks for.
func TestRunPodSandboxExtraNetworks(t *testing.T) {
	fn := &fakeNetwork{snap: &confwatch.Snapshot{Networks: []*confwatch.Network{{Name: "net1"}, {Name: "net2"}}}}
	e := newEnv(t, fn)
	e.run(t, withAnnotation(podConfig("web", 0, nil), npwg.NetworksAnnotation,
		`[{"name":"net2","namespace":"ns1","interface":"net1","ips":["10.9.0.5/24"]},{"name":"net1"}]`))
	want := []cninetwork.NetworkSelection{{Name: "net2", Namespace: "ns1", Interface: "net1", IPs: []string{"10.9.0.5/24"}}, {Name: "net1"}}
	if got := fn.setUps[0].ExtraNetworks; !reflect.DeepEqual(got, want) {
		t.Fatalf("plugin got extra networks %+v, want %+v", got, want)
	}
}

// TestAdminCheck: the admin service's Check runs the plugin's CHECK on a ready sandbox found
// by an ID prefix, and answers NotFound for an unknown sandbox, one with nothing attached, and
// a stopped one, and FailedPrecondition when the plugin finds the pod invalid.
func TestAdminCheck(t *testing.T) {
	fn := &fakeNetwork{}
	e := newEnv(t, fn)
	ctx := t.Context()
	id := e.run(t, podConfig("web", 0, nil))
	if err := CallCheck(ctx, e.conn, id[:12]); err != nil {
		t.Fatalf("Check of a ready sandbox: %v", err)
	}
	fn.mu.Lock()
	checked := len(fn.checks) == 1 && fn.checks[0].SandboxID == id && fn.checks[0].NetNS != ""
	fn.mu.Unlock()
	if !checked {
		t.Fatalf("plugin CHECKs = %+v; want one of sandbox %s in its netns", fn.checks, id)
	}
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"nothing cached", fmt.Errorf("pod x: %w", cninetwork.ErrUnknownSandbox), codes.NotFound, "unknown pod sandbox"},
		{"netns gone", fmt.Errorf("%w: netns gone", cninetwork.ErrInvalidPod), codes.FailedPrecondition, "netns gone"},
		{"plugin fails", errors.New(`network "net1": CHECK: plugin "bridge": veth gone`), codes.Internal, "veth gone"},
	} {
		fn.mu.Lock()
		fn.checkErr = tc.err
		fn.mu.Unlock()
		wantCode(t, CallCheck(ctx, e.conn, id), tc.code, tc.msg)
	}
	wantCode(t, CallCheck(ctx, e.conn, "nosuchsandbox"), codes.NotFound, "not found")
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, CallCheck(ctx, e.conn, id), codes.NotFound, "no network attached")
}
