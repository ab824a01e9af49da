package cninetwork

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, statusNet))
	p := newTestPlugin(t, fe, src, WithRegisterer(reg))
	ctx := t.Context()

	if _, err := p.SetUpPod(ctx, testPod("a")); err != nil {
		t.Fatal(err)
	}
	fe.set("bridge", "ADD", reply{err: &types.Error{Code: 999, Msg: "no"}})
	if _, err := p.SetUpPod(ctx, testPod("b")); err == nil {
		t.Fatal("SetUpPod succeeded")
	}
	if _, err := p.GetPodNetworkStatus(ctx, testPod("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetPodNetworkStatus(ctx, testPod("b")); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatal(err)
	}
	if err := p.CheckPod(ctx, testPod("a")); err != nil {
		t.Fatal(err)
	}
	if err := p.TearDownPod(ctx, testPod("a")); err != nil {
		t.Fatal(err)
	}
	p.probeStatus(ctx)
	if err := p.GC(ctx, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		op            string
		total, errors float64
	}{
		{opSetUp, 2, 1},
		{opTearDown, 1, 0},
		{opPodStatus, 2, 0}, // an unknown sandbox is an answer, not a failure
		{opCheck, 1, 0},
		{opStatus, 1, 0},
		{opGC, 1, 0},
	} {
		if got := testutil.ToFloat64(p.metrics.total.WithLabelValues(tc.op)); got != tc.total {
			t.Errorf("operations_total{%s} = %v; want %v", tc.op, got, tc.total)
		}
		if got := testutil.ToFloat64(p.metrics.errors.WithLabelValues(tc.op)); got != tc.errors {
			t.Errorf("operations_errors_total{%s} = %v; want %v", tc.op, got, tc.errors)
		}
	}
	want := `
# HELP cnishim_network_plugin_operations_errors_total Number of failed network plugin operations, by operation type.
# TYPE cnishim_network_plugin_operations_errors_total counter
cnishim_network_plugin_operations_errors_total{operation_type="check"} 0
cnishim_network_plugin_operations_errors_total{operation_type="gc"} 0
cnishim_network_plugin_operations_errors_total{operation_type="get_pod_network_status"} 0
cnishim_network_plugin_operations_errors_total{operation_type="set_up_pod"} 1
cnishim_network_plugin_operations_errors_total{operation_type="status"} 0
cnishim_network_plugin_operations_errors_total{operation_type="tear_down_pod"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cnishim_network_plugin_operations_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(p.metrics.duration); n != 6 {
		t.Fatalf("duration histogram has %d series; want 6", n)
	}

	// Registering a second plugin's metrics with the same registerer fails New.
	if _, err := New(withSource(src), WithRegisterer(reg)); err == nil {
		t.Fatal("New registered duplicate metrics")
	}
	// Without a registerer nothing is registered anywhere.
	if _, err := New(withSource(src)); err != nil {
		t.Fatal(err)
	}
}

// TestOperationLogs: each operation logs one line at V(4) with the pod and its sandbox ID.
func TestOperationLogs(t *testing.T) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true), ktesting.Verbosity(4)))
	ctx := klog.NewContext(t.Context(), logger)

	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	pod := testPod("s1")
	if _, err := p.SetUpPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetPodNetworkStatus(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := p.TearDownPod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	entries := logger.GetSink().(ktesting.Underlier).GetBuffer().Data()
	var msgs []string
	for _, e := range entries {
		msgs = append(msgs, e.Message)
		if e.Verbosity != 4 {
			t.Errorf("%q logged at V(%d); want V(4)", e.Message, e.Verbosity)
		}
		kv := append(append([]any{}, e.WithKVList...), e.ParameterKVList...)
		var hasPod, hasID bool
		for i := 0; i+1 < len(kv); i += 2 {
			switch kv[i] {
			case "pod":
				hasPod = kv[i+1].(klog.ObjectRef) == klog.ObjectRef{Name: "web-s1", Namespace: "default"}
			case "podSandboxID":
				hasID = kv[i+1] == "s1"
			}
		}
		if !hasPod || !hasID {
			t.Errorf("%q lacks pod or podSandboxID: %v", e.Message, kv)
		}
	}
	if want := []string{"Set up pod network", "Got pod network status", "Tore down pod network"}; strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("log lines = %q; want %q", msgs, want)
	}
}

// TestMetricsRegistrationAllOrNothing: a failed New leaves the registry as it found it.
func TestMetricsRegistrationAllOrNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := newFakeSource()
	p, err := New(withSource(src), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	before, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(withSource(src), WithRegisterer(reg)); err == nil {
		t.Fatal("second New with the same registerer succeeded")
	}
	after, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("a failed New changed the registry: %d metric families, had %d", len(after), len(before))
	}
	// With only the admission metrics left registered, New fails in its second step and
	// takes back what its first registered.
	p.metrics.unregister(reg) // frees the names for a new plugin on reg
	if _, err := New(withSource(src), WithRegisterer(reg)); err == nil {
		t.Fatal("New succeeded though the admission metrics are still registered")
	}
	if got, _ := reg.Gather(); len(got) != len(before)-3 {
		t.Fatalf("after a failed New: %d metric families; want %d", len(got), len(before)-3)
	}

	// A New that fails building its watcher registers nothing: a retry on the same registerer
	// then succeeds.
	fresh := prometheus.NewPedanticRegistry()
	if _, err := New(WithConfDir(t.TempDir()), WithRegisterer(fresh), WithBinDirs("")); err == nil {
		t.Fatal("New with an empty plugin dir succeeded")
	}
	if got, _ := fresh.Gather(); len(got) != 0 {
		t.Fatalf("a New that failed building its watcher left %d metric families registered", len(got))
	}
	if _, err := New(withSource(src), WithRegisterer(fresh)); err != nil {
		t.Fatalf("New after a failed New on the same registerer: %v", err)
	}
}
