package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// SetUpPod attaches the pod to its networks and returns its network status: first loopback (see
// WithLoopbackPlugin and WithoutLoopback), then the default network on eth0 and pod.ExtraNetworks side by side, their
// chains being independent; once all are attached, it moves the pod's default routes as the
// extra networks ask (NetworkSelection.DefaultRoute). The status lists the default network
// first, then the extra networks in order, and its pod IPs are the default network's. The pod
// is checked before any plugin runs, as ValidatePod checks it (errors wrap ErrInvalidPod), and
// the default network is read once from the current snapshot (ErrNotReady without one). If any
// attachment fails, every attachment tried, the failed one included, is deleted again (side by
// side, loopback last) before SetUpPod returns, under a fresh budget of the operation timeout
// that the caller's cancellation does not cut short; the error names the pod, the network and
// the plugin. A sandbox that is already set up is refused (tear it down first).
//
// SetUpPod waits, and is bounded, as every operation is (see the package doc): every chain it
// runs, each network's and each of a rollback's, takes a slot of its lane of its own, so a
// pod's chains run side by side only as far as the bound allows. It also waits while a GC's
// plugins run. With a caller's deadline, its wait for its first slot ends early enough to leave
// the chains as long as recent chains of the same networks took (their 90th percentile): a
// set-up that would have to wait longer is not started, and its error wraps ErrTimeout and
// says so; one that need not wait (the sandbox free, a slot free, nobody queued) is never
// refused for it.
func (p *Plugin) SetUpPod(ctx context.Context, pod *Pod) (status *PodNetworkStatus, retErr error) {
	o := p.begin(ctx, opSetUp, pod)
	defer func() { o.end(retErr, "Set up pod network", "ips", ipStrings(status)) }()
	su, err := p.prepareSetUp(pod, o.start)
	if err != nil {
		return nil, err
	}

	// The waits for the sandbox, the gate and the slots end early enough for the chains to run
	// (see queueContext); the operation timeout is each chain's, from its admission on.
	budget, cancelBudget := p.queueContext(ctx, su)
	defer cancelBudget()
	waitCtx, cancelWait := p.waitContext(budget)
	defer cancelWait()
	unlock, err := o.lock(waitCtx)
	if err != nil {
		return nil, p.queueError(ctx, su, err)
	}
	defer unlock()
	if err := p.checkNotSetUp(pod); err != nil {
		return nil, err
	}
	// The gate comes before the slots: a set-up held back by a GC holds no slot, so the chains
	// a GC waits for can always get one.
	if err := p.gate.enter(waitCtx); err != nil {
		return nil, p.queueError(ctx, su, err)
	}
	defer p.gate.leave()
	first, err := p.admitNow(waitCtx, laneAdd)
	if err != nil {
		return nil, p.queueError(ctx, su, err)
	}
	defer first() // idempotent: attachAll gives it back as soon as its chain ends

	if err := p.records.put(pod.SandboxID, su.recorded(p.loopbackList)); err != nil {
		return nil, fmt.Errorf("%s: %w", pod, err)
	}
	status, err = p.attachAll(ctx, budget, su, first)
	if err != nil {
		// Still under the sandbox's lock and the gate.
		return nil, p.rollback(ctx, su, err)
	}
	p.statusMu.Lock()
	p.pods[pod.SandboxID] = status
	p.statusMu.Unlock()
	return status.clone(), nil
}

// setUp is one SetUpPod in progress: what it is to attach, and what it has tried so far.
type setUp struct {
	pod   *Pod
	start time.Time
	plan  []attachment
	// rts holds the runtime arguments of plan's attachments, and loRT those of the loopback
	// network when the loopback plugin attaches it (WithLoopbackPlugin), else nil.
	rts  []*libcni.RuntimeConf
	loRT *libcni.RuntimeConf
	// attempted lists every attachment tried, the one that failed included: a chain that
	// fails part-way leaves what its first plugins made, and libcni caches nothing for it.
	attempted []triedAttachment
}

// triedAttachment is an attachment a set-up ran ADD for, to delete again on rollback.
type triedAttachment struct {
	network string
	list    *libcni.NetworkConfigList
	rt      *libcni.RuntimeConf
}

// prepareSetUp checks pod and plans its set-up from the current snapshot, before anything is
// locked or run: the pod's fields, its networks and interfaces (errors wrap ErrInvalidPod or
// ErrNotReady), and its netns.
func (p *Plugin) prepareSetUp(pod *Pod, start time.Time) (*setUp, error) {
	pa, err := preparePod(pod, *p.podCIDRs.Load())
	if err != nil {
		return nil, err
	}
	plan, err := p.plan(p.source.Snapshot(), pod)
	if err != nil {
		return nil, err
	}
	if pod.NetNS == "" {
		return nil, fmt.Errorf("%w: %s: no netns path", ErrInvalidPod, pod)
	}
	if _, err := netns.IsNetNS(pod.NetNS); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPod, pod, err)
	}
	su := &setUp{pod: pod, start: start, plan: plan, rts: make([]*libcni.RuntimeConf, len(plan))}
	if p.opts.loopback == loopbackPlugin {
		su.loRT = runtimeConf(pod.SandboxID, pa, nil, "lo", pod.NetNS)
	}
	for i, a := range plan {
		su.rts[i] = a.runtimeConf(pod.SandboxID, pa, pod.NetNS)
	}
	return su, nil
}

// recorded returns the record of every attachment su is about to make, to write before any
// plugin runs: if this process dies mid-chain, libcni will have cached nothing, and the record
// is what lets the teardown use this set-up's own configuration rather than whatever the
// default network is by then. The record stays until the attachments are deleted: it is what
// GC goes by.
func (su *setUp) recorded(loopbackList *libcni.NetworkConfigList) []*libcni.NetworkAttachment {
	return recordedAttachments(loopbackList, su.loRT, su.plan, su.rts)
}

// networks names su's networks, for messages: "net-a+net-b".
func (su *setUp) networks() string {
	names := make([]string, len(su.plan))
	for i, a := range su.plan {
		names[i] = a.network
	}
	return strings.Join(names, "+")
}

// attachAll attaches su's pod to loopback (see WithLoopbackPlugin and WithoutLoopback), then to all its networks side by
// side, the default network and the extra networks alike (their chains are independent), and
// returns the pod's status, the default network first; then it moves the pod's default routes
// as the extra networks' default-route asks. first is the ADD slot the set-up was admitted
// with: loopback's plugin and the default network's chain run in it, and every other chain
// waits for a slot of its own within budget (see inSlot); each gives its slot back as it ends,
// and each runs under ctx capped by the operation timeout from its admission. It stops at a
// failure of loopback, and after every network's chain has ended when one of them fails;
// su.attempted then says what to roll back.
func (p *Plugin) attachAll(ctx, budget context.Context, su *setUp, first func()) (*PodNetworkStatus, error) {
	// Loopback's plugin and the default network's chain share the first slot, and its budget.
	firstCtx, cancel := p.chainContext(ctx)
	defer cancel()
	switch p.opts.loopback {
	case loopbackInProcess:
		if err := loopbackUp(su.pod.NetNS); err != nil {
			first()
			return nil, fmt.Errorf("%s: %w", su.pod, err)
		}
	case loopbackPlugin:
		su.attempted = append(su.attempted, triedAttachment{loopbackNetworkName, p.loopbackList, su.loRT})
		if _, err := p.attach(firstCtx, su, loopbackNetworkName, p.loopbackList, su.loRT); err != nil {
			first()
			return nil, fmt.Errorf("%s: %w", su.pod, err)
		}
	}
	// Each chain is noted as attempted, in plan order, before any starts: su.attempted is not
	// shared.
	for i, a := range su.plan {
		su.attempted = append(su.attempted, triedAttachment{a.network, a.list, su.rts[i]})
	}
	status := &PodNetworkStatus{Attachments: make([]AttachmentStatus, len(su.plan))}
	errs := make([]error, len(su.plan))
	inWaves(len(su.plan), func(int) bool { return true }, func(i int) {
		a := su.plan[i]
		chain := func(ctx context.Context) error {
			admitted := time.Now()
			ctx, meter := withCPUMeter(ctx)
			res, err := p.attach(ctx, su, a.network, a.list, su.rts[i])
			if err != nil {
				return err
			}
			p.learnAdd(a.network, admitted, meter)
			if status.Attachments[i], err = attachmentStatus(res, a.network, a.ifName); err != nil {
				return fmt.Errorf("network %q: ADD result: %w", a.network, err)
			}
			return nil
		}
		var err error
		if i == 0 {
			err = chain(firstCtx)
			first()
		} else {
			// The other chains wait for slots of their own as the set-up waited for its first.
			err = p.inSlot(budget, ctx, laneAdd, a.network, "ADD", chain)
		}
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", su.pod, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	status.IPs = status.Attachments[0].IPs
	if err := su.applyDefaultRoutes(status); err != nil {
		return nil, err
	}
	return status, nil
}

// applyDefaultRoutes replaces the pod's default routes as its extra networks' default-route
// asks, in plan order, once every attachment succeeded (a chain may install a default route of
// its own), and marks in status the attachments the pod's default routes go through.
func (su *setUp) applyDefaultRoutes(status *PodNetworkStatus) error {
	replaced := map[bool]bool{} // by "is IPv4"
	for i, a := range su.plan {
		if len(a.defaultRoute) == 0 {
			continue
		}
		if err := replaceDefaultRoutes(su.pod.NetNS, a.ifName, a.defaultRoute); err != nil {
			return fmt.Errorf("%s: network %q: default-route: %w", su.pod, a.network, err)
		}
		status.Attachments[i].Default = true
		for _, gw := range a.defaultRoute {
			replaced[gw.To4() != nil] = true
		}
	}
	def := &status.Attachments[0]
	def.Default = len(replaced) == 0 || slices.ContainsFunc(def.IPs, func(ip net.IP) bool { return !replaced[ip.To4() != nil] })
	return nil
}

// attach runs ADD of one network for su's pod, which the caller noted in su.attempted, and
// returns the network's result.
func (p *Plugin) attach(ctx context.Context, su *setUp, network string, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error) {
	tctx, tr := withTrace(ctx)
	res, err := p.cni.AddNetworkList(tctx, list, rt)
	if err != nil {
		return nil, chainError(tctx, su.start, network, "ADD", tr, false, err)
	}
	return res, nil
}

// rollback deletes every attachment su tried, after the set-up failed with cause: all its
// networks side by side (libcni deletes each chain in reverse), each chain in a slot of the DEL
// lane of its own, then loopback, under a fresh
// budget of the operation timeout that the caller's cancellation does not cut short, and
// removes the record. It returns cause, joined with ErrRollbackFailed and the
// DEL errors if a DEL failed; the record then stays, so that the next teardown deletes with
// this set-up's configuration.
func (p *Plugin) rollback(ctx context.Context, su *setUp, cause error) error {
	if len(su.attempted) == 0 {
		// Nothing was attached. A record that cannot be removed only makes a later teardown
		// send DELs plugins must accept.
		_ = p.records.remove(su.pod.SandboxID)
		return cause
	}
	// A fresh wait and a fresh budget for each chain (see inSlot), whatever ended the set-up.
	ctx = context.WithoutCancel(ctx)
	n := len(su.attempted)
	errs := make([]error, n)
	inWaves(n, func(i int) bool { return sideBySide(su.attempted[n-1-i].network, su.attempted[n-1-i].rt.IfName) }, func(i int) {
		a := su.attempted[n-1-i]
		start := time.Now()
		errs[i] = p.inSlot(ctx, ctx, laneDel, a.network, "DEL", func(ctx context.Context) error {
			tctx, tr := withTrace(ctx)
			if err := p.cni.DelNetworkList(tctx, a.list, a.rt); err != nil {
				return chainError(tctx, start, a.network, "DEL", tr, false, err)
			}
			return nil
		})
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w; %w of %s: %w", cause, ErrRollbackFailed, su.pod, err)
	}
	_ = p.records.remove(su.pod.SandboxID)
	return cause
}

// checkNotSetUp refuses a sandbox ID that is already set up, in memory or in libcni's cache,
// or that this Plugin holds a record of (see recordStore).
func (p *Plugin) checkNotSetUp(pod *Pod) error {
	p.statusMu.Lock()
	_, known := p.pods[pod.SandboxID]
	p.statusMu.Unlock()
	if known {
		return fmt.Errorf("%w: %s: sandbox is already set up; tear it down first", ErrInvalidPod, pod)
	}
	cached, err := p.cni.GetCachedAttachments(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: read CNI cache: %w", pod, err)
	}
	if len(cached) > 0 {
		return fmt.Errorf("%w: %s: sandbox is already set up (network %q, interface %s); tear it down first",
			ErrInvalidPod, pod, cached[0].Network, cached[0].IfName)
	}
	recorded, err := p.records.get(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: %w", pod, err)
	}
	if len(recorded) > 0 {
		return fmt.Errorf("%w: %s: an earlier set-up of this sandbox (network %q) was cut off or not rolled back; tear it down first",
			ErrInvalidPod, pod, recorded[len(recorded)-1].Network)
	}
	return nil
}
