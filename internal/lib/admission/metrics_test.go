package admission

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// waitSampleCount returns how many waits the histogram holds for lane.
func waitSampleCount(t *testing.T, reg prometheus.Gatherer, lane string) uint64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "cnishim_admission_wait_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == LaneLabel && lp.GetValue() == lane {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	t.Fatalf("no cnishim_admission_wait_seconds for lane %q", lane)
	return 0
}

func TestMetricsFollowLane(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	add := NewLane(LaneAdd, 1, m)
	NewLane(LaneDel, 0, m)

	type want struct{ limit, inFlight, queued, timeouts float64 }
	check := func(step string, w want) {
		t.Helper()
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"limit", testutil.ToFloat64(m.limit.WithLabelValues(LaneAdd)), w.limit},
			{"in_flight", testutil.ToFloat64(m.inFlight.WithLabelValues(LaneAdd)), w.inFlight},
			{"queued", testutil.ToFloat64(m.queued.WithLabelValues(LaneAdd)), w.queued},
			{"timeouts_total", testutil.ToFloat64(m.timeouts.WithLabelValues(LaneAdd)), w.timeouts},
		} {
			if c.got != c.want {
				t.Errorf("%s: cnishim_admission_%s{lane=%q} = %v, want %v", step, c.name, LaneAdd, c.got, c.want)
			}
		}
	}

	check("new lane", want{limit: 1})
	holder := mustAcquire(t, add)
	check("one admitted", want{limit: 1, inFlight: 1})

	out := make(chan result)
	ctx, cancel := context.WithCancel(t.Context())
	enqueue(t, ctx, add, 0, out)
	enqueue(t, t.Context(), add, 1, out)
	check("two queued", want{limit: 1, inFlight: 1, queued: 2})

	cancel()
	if r := <-out; r.id != 0 || !errors.Is(r.err, ErrQueueTimeout) {
		t.Fatalf("waiter %d: %v, want 0 timed out", r.id, r.err)
	}
	check("one timed out", want{limit: 1, inFlight: 1, queued: 1, timeouts: 1})

	holder()
	r := <-out
	check("waiter admitted", want{limit: 1, inFlight: 1, timeouts: 1})
	add.SetLimit(4)
	check("limit raised", want{limit: 4, inFlight: 1, timeouts: 1})
	r.release()
	check("all released", want{limit: 4, timeouts: 1})

	// The holder (no wait) and waiter 1 were admitted; the timed-out waiter
	// is counted in timeouts, not in waits.
	if n := waitSampleCount(t, reg, LaneAdd); n != 2 {
		t.Errorf("wait histogram holds %d samples, want 2", n)
	}

	// Names, help and labels as an operator sees them; the del lane is
	// unbounded and idle.
	const exposition = `
# HELP cnishim_admission_limit Bound on operations in flight per admission lane; 0 means unbounded.
# TYPE cnishim_admission_limit gauge
cnishim_admission_limit{lane="add"} 4
cnishim_admission_limit{lane="del"} 0
# HELP cnishim_admission_queued Operations waiting for admission, per admission lane.
# TYPE cnishim_admission_queued gauge
cnishim_admission_queued{lane="add"} 0
cnishim_admission_queued{lane="del"} 0
# HELP cnishim_admission_timeouts_total Operations whose context ended while they waited for admission, per admission lane.
# TYPE cnishim_admission_timeouts_total counter
cnishim_admission_timeouts_total{lane="add"} 1
cnishim_admission_timeouts_total{lane="del"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exposition),
		"cnishim_admission_limit", "cnishim_admission_queued", "cnishim_admission_timeouts_total"); err != nil {
		t.Error(err)
	}
}

func TestNewMetricsRegistration(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before registers something on the registry first; nil: nothing.
		before  func(reg *prometheus.Registry) error
		nilReg  bool
		wantErr bool
	}{
		{name: "fresh registry"},
		{name: "nil registerer", nilReg: true, wantErr: true},
		{
			name:    "registered twice",
			before:  func(reg *prometheus.Registry) error { _, err := NewMetrics(reg); return err },
			wantErr: true,
		},
		{
			// One of the five names is taken: none of the five may stay registered.
			name: "one name taken",
			before: func(reg *prometheus.Registry) error {
				return reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cnishim_admission_queued", Help: "taken"}))
			},
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			if tc.before != nil {
				if err := tc.before(reg); err != nil {
					t.Fatal(err)
				}
			}
			before, err := testutil.GatherAndCount(reg)
			if err != nil {
				t.Fatal(err)
			}
			var r prometheus.Registerer = reg
			if tc.nilReg {
				r = nil
			}
			m, err := NewMetrics(r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewMetrics: %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				if m != nil {
					t.Error("NewMetrics returned metrics with its error")
				}
				if !strings.HasPrefix(err.Error(), "admission metrics: ") {
					t.Errorf("error %q does not say it is about admission metrics", err)
				}
				after, gerr := testutil.GatherAndCount(reg)
				if gerr != nil {
					t.Fatal(gerr)
				}
				if after != before {
					t.Errorf("failed NewMetrics left %d series registered, had %d", after, before)
				}
				return
			}
			NewSet(DefaultLimits(), m)
			// Five lanes, each in four single-series families and one histogram, and the
			// adaptive ADD bound's two gauges.
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 27 {
				t.Errorf("GatherAndCount = %d, %v; want 27 series", n, err)
			}
			if !m.Unregister(reg) {
				t.Error("Unregister found nothing to remove")
			}
			if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
				t.Errorf("after Unregister: GatherAndCount = %d, %v; want 0 series", n, err)
			}
			if m.Unregister(reg) {
				t.Error("second Unregister reported removing something")
			}
			if _, err := NewMetrics(reg); err != nil {
				t.Errorf("NewMetrics after Unregister: %v", err)
			}
		})
	}
}
