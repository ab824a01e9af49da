package admission

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LaneLabel is the name of the label that tells lanes apart in every metric.
const LaneLabel = "lane"

// waitBuckets spans an admission that did not wait at all up to one that
// waited most of the kubelet's 220 s operation timeout.
var waitBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 240}

// Metrics holds the Prometheus collectors that lanes report to, each labelled
// with the lane's name (label [LaneLabel]):
//
//	cnishim_admission_limit            gauge: the lane's bound, 0 when unbounded
//	cnishim_admission_in_flight        gauge: callers holding a slot
//	cnishim_admission_queued           gauge: callers waiting for a slot
//	cnishim_admission_wait_seconds     histogram: time each admitted caller
//	                                   waited, 0 when admitted at once
//	cnishim_admission_timeouts_total   counter: callers whose context ended
//	                                   before they were admitted
//	cnishim_admission_chain_cpu_seconds   gauge: for a lane with an [Adaptive]
//	                                   bound, the CPU a chain spends
//	cnishim_admission_chain_wait_seconds  gauge: for a lane with an [Adaptive]
//	                                   bound, what a chain waits on other than a CPU
//
// A Metrics is safe for concurrent use and may be shared by several lanes with
// distinct names.
type Metrics struct {
	limit    *prometheus.GaugeVec
	inFlight *prometheus.GaugeVec
	queued   *prometheus.GaugeVec
	wait     *prometheus.HistogramVec
	timeouts *prometheus.CounterVec
	// chainCPU and chainWait have a child only for lanes with an Adaptive bound.
	chainCPU, chainWait *prometheus.GaugeVec
}

// NewMetrics creates the admission collectors and registers them with r, all
// or none: on error nothing stays registered.
func NewMetrics(r prometheus.Registerer) (*Metrics, error) {
	if r == nil {
		return nil, errors.New("admission metrics: nil prometheus registerer")
	}
	const ns, sub = "cnishim", "admission"
	lanes := []string{LaneLabel}
	m := &Metrics{
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "limit",
			Help: "Bound on operations in flight per admission lane; 0 means unbounded.",
		}, lanes),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "in_flight",
			Help: "Operations admitted and not yet finished, per admission lane.",
		}, lanes),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "queued",
			Help: "Operations waiting for admission, per admission lane.",
		}, lanes),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "wait_seconds",
			Help:    "Time an admitted operation waited for admission, per admission lane.",
			Buckets: waitBuckets,
		}, lanes),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "timeouts_total",
			Help: "Operations whose context ended while they waited for admission, per admission lane.",
		}, lanes),
		chainCPU: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "chain_cpu_seconds",
			Help: "CPU a chain spends, as the lane's adaptive bound takes it; only for lanes with an adaptive bound.",
		}, lanes),
		chainWait: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "chain_wait_seconds",
			Help: "Time a chain waits on something other than a CPU, as the lane's adaptive bound takes it; only for lanes with an adaptive bound.",
		}, lanes),
	}
	// One Register call for all of them, so registration is all or nothing.
	if err := r.Register(collector{m}); err != nil {
		return nil, fmt.Errorf("admission metrics: %w", err)
	}
	return m, nil
}

// Unregister removes the collectors that NewMetrics registered from r, for a
// caller whose own construction failed after NewMetrics succeeded or that is
// shutting down. It reports whether they were registered with r. Lanes that
// report to m keep working; their values are just no longer collected by r.
func (m *Metrics) Unregister(r prometheus.Registerer) bool {
	return r.Unregister(collector{m})
}

// collector presents a Metrics as one prometheus.Collector.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	c.m.limit.Describe(ch)
	c.m.inFlight.Describe(ch)
	c.m.queued.Describe(ch)
	c.m.wait.Describe(ch)
	c.m.timeouts.Describe(ch)
	c.m.chainCPU.Describe(ch)
	c.m.chainWait.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.limit.Collect(ch)
	c.m.inFlight.Collect(ch)
	c.m.queued.Collect(ch)
	c.m.wait.Collect(ch)
	c.m.timeouts.Collect(ch)
	c.m.chainCPU.Collect(ch)
	c.m.chainWait.Collect(ch)
}

// laneMetrics are one lane's children of the Metrics vectors, resolved once so
// that reporting costs no label lookup. A nil *laneMetrics reports nothing.
type laneMetrics struct {
	limit, inFlight, queued prometheus.Gauge
	wait                    prometheus.Observer
	timeouts                prometheus.Counter
	// parent and name resolve the adaptive bound's children on first use.
	parent *Metrics
	name   string
}

func (m *Metrics) forLane(name string) *laneMetrics {
	return &laneMetrics{
		limit:    m.limit.WithLabelValues(name),
		inFlight: m.inFlight.WithLabelValues(name),
		queued:   m.queued.WithLabelValues(name),
		wait:     m.wait.WithLabelValues(name),
		timeouts: m.timeouts.WithLabelValues(name),
		parent:   m,
		name:     name,
	}
}

// publishEstimate sets the gauges of the lane's adaptive bound.
func (lm *laneMetrics) publishEstimate(cpu, wait time.Duration) {
	if lm == nil {
		return
	}
	lm.parent.chainCPU.WithLabelValues(lm.name).Set(cpu.Seconds())
	lm.parent.chainWait.WithLabelValues(lm.name).Set(wait.Seconds())
}

func (lm *laneMetrics) publish(limit, inFlight, queued int) {
	if lm == nil {
		return
	}
	lm.limit.Set(float64(limit))
	lm.inFlight.Set(float64(inFlight))
	lm.queued.Set(float64(queued))
}

func (lm *laneMetrics) observeWait(d time.Duration) {
	if lm == nil {
		return
	}
	lm.wait.Observe(d.Seconds())
}

func (lm *laneMetrics) countTimeout() {
	if lm == nil {
		return
	}
	lm.timeouts.Inc()
}
