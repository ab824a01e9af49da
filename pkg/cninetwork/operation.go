package cninetwork

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// operation is one pod operation in progress (SetUpPod, TearDownPod, CheckPod): what each does
// before and after its plugins run, written once. begin starts it; the caller defers end.
type operation struct {
	p *Plugin
	// kind is the operation_type of its metrics.
	kind   string
	pod    *Pod
	start  time.Time
	logger klog.Logger
}

// begin starts an operation of kind on pod, with the caller's logger naming the pod and its
// sandbox.
func (p *Plugin) begin(ctx context.Context, kind string, pod *Pod) *operation {
	o := &operation{p: p, kind: kind, pod: pod, start: time.Now(), logger: klog.FromContext(ctx)}
	if pod != nil {
		o.logger = o.logger.WithValues("pod", klog.KObj(pod), "podSandboxID", pod.SandboxID)
	}
	return o
}

// end records how the operation ended: its metrics, and one line at V(4) saying msg, with kv,
// the operation's duration and whether it succeeded.
func (o *operation) end(err error, msg string, kv ...any) {
	o.p.metrics.observe(o.kind, o.start, err != nil)
	if l := o.logger.V(4); l.Enabled() {
		l.Info(msg, append(kv, "duration", time.Since(o.start), "ok", err == nil)...)
	}
}

// lock takes the pod's sandbox lock, which serializes the operations on one sandbox: at once
// when nothing holds or waits for it, whatever ctx says (so a budget for waiting never refuses
// an operation that would not wait), else once the operations before it are done, unless ctx
// ends first. It returns the function that releases the lock; its error says what it waited
// for and wraps ErrTimeout at a deadline.
func (o *operation) lock(ctx context.Context) (unlock func(), err error) {
	if unlock, ok := o.p.locks.TryLock(o.pod.SandboxID); ok {
		return unlock, nil
	}
	unlock, err = o.p.locks.Lock(ctx, o.pod.SandboxID)
	if err != nil {
		return nil, o.p.waitError(o.pod, o.start, err)
	}
	return unlock, nil
}

// inSlot runs one plugin chain of network, a verb ("ADD", "DEL", "CHECK") of a pod, in a slot
// of lane l of its own: every chain counts against its lane's bound, however many a pod runs
// side by side. It takes a free slot at once (see admitNow), else waits for one within wait,
// capped at the operation timeout from now when wait has no deadline (see waitContext); fn
// runs under run capped by the operation timeout from admission on, so neither this wait nor
// the chains before it eat the chain's budget. When the wait ends first, the chain does not
// run, and the error (see chainError) says it ended before any plugin ran.
func (p *Plugin) inSlot(wait, run context.Context, l lane, network, verb string, fn func(context.Context) error) error {
	start := time.Now()
	wait, cancelWait := p.waitContext(wait)
	defer cancelWait()
	release, err := p.admitNow(wait, l)
	if err != nil {
		return chainError(wait, start, network, verb, &execTrace{}, false, err)
	}
	defer release()
	ctx, cancel := p.chainContext(run)
	defer cancel()
	return fn(ctx)
}

// chainContext returns ctx capped by the operation timeout: the budget of a chain, or of GC's
// pass, from its admission on.
func (p *Plugin) chainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.opts.operationTimeout)
}

// waitContext returns the context an operation waits under, for its sandbox and for its
// slots: the caller's, capped at the operation timeout when the caller set no deadline, so
// that no operation waits forever.
func (p *Plugin) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.opts.operationTimeout)
}

// sideBySide reports whether the attachment of network on ifName is one of the pod's networks,
// default or extra, whose chains run side by side (see inWaves), rather than the built-in
// loopback network, which runs alone.
func sideBySide(network, ifName string) bool {
	return !(network == loopbackNetworkName && ifName == "lo")
}

// inWaves calls f for each index of [0, n) in order, except that a run of consecutive indexes
// for which together reports true is called side by side, each in its own goroutine; it returns
// when every call has.
func inWaves(n int, together func(int) bool, f func(int)) {
	for i := 0; i < n; {
		j := i + 1
		if together(i) {
			for j < n && together(j) {
				j++
			}
		}
		if j-i == 1 {
			f(i)
		} else {
			var wg sync.WaitGroup
			for k := i; k < j; k++ {
				wg.Go(func() { f(k) })
			}
			wg.Wait()
		}
		i = j
	}
}
