package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// maxStatusTimeout caps one CNI STATUS probe, so that a hung plugin turns the node not ready
// rather than leaving the last answer standing for a whole operation timeout.
const maxStatusTimeout = 30 * time.Second

// pollStatus asks the default network's plugins for their CNI STATUS, when its cniVersion is
// 1.1.0 or later: at once, then every status interval and at each new configuration snapshot,
// until ctx ends. The answer is published in p.netStatus for Status to read.
func (p *Plugin) pollStatus(ctx context.Context) {
	changed := make(chan struct{}, 1)
	// Read before the first probe, not in the goroutine: a snapshot published between the
	// first probe and the goroutine's start would otherwise be taken for the one already
	// probed, and its network not probed until the next tick.
	after := p.source.Snapshot().Generation
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			s, err := p.source.Wait(ctx, after)
			if err != nil {
				return // ctx ended
			}
			after = s.Generation
			select {
			case changed <- struct{}{}:
			default: // a probe is already due
			}
		}
	}()

	tick := time.NewTicker(p.opts.statusInterval)
	defer tick.Stop()
	for {
		p.probeStatus(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-changed:
		}
	}
}

// probeStatus runs one CNI STATUS of the current default network and publishes the answer.
func (p *Plugin) probeStatus(ctx context.Context) {
	snap := p.source.Snapshot()
	if snap == nil || snap.Default == nil {
		return
	}
	n := snap.Default
	if ok, err := version.GreaterThanOrEqualTo(n.CNIVersion, "1.1.0"); err != nil || !ok {
		p.netStatus.Store(&networkStatus{network: n.Name, digest: n.Digest})
		return
	}
	start := time.Now()
	timeout := min(p.opts.operationTimeout, maxStatusTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	release, err := p.admit(ctx, laneStatus)
	if err != nil {
		return // ctx ended while queued; the last answer stands
	}
	tctx, tr := withTrace(ctx)
	err = p.cni.GetStatusNetworkList(tctx, p.listFor(n))
	release()
	if err != nil && ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // shutting down: not an answer
	}
	if err != nil {
		err = statusError(tctx, start, tr, err)
	}
	p.metrics.observe(opStatus, start, err != nil)
	p.netStatus.Store(&networkStatus{network: n.Name, digest: n.Digest, err: err})
}

// statusError describes a failed CNI STATUS: a plugin reporting the network unavailable
// (codes 50 and 51), another plugin error, or a timeout.
func statusError(ctx context.Context, start time.Time, tr *execTrace, err error) error {
	plugin := tr.plugin()
	if ctx.Err() != nil {
		return fmt.Errorf("plugin %q: CNI STATUS %w after %s: %w", plugin, ErrTimeout, time.Since(start).Round(time.Millisecond), err)
	}
	var te *types.Error
	if errors.As(err, &te) {
		switch te.Code {
		case types.ErrPluginNotAvailable:
			return fmt.Errorf("plugin %q reports it cannot set up pods (CNI error %d): %w", plugin, te.Code, err)
		case types.ErrLimitedConnectivity:
			return fmt.Errorf("plugin %q reports it cannot set up pods and existing pods may have limited connectivity (CNI error %d): %w", plugin, te.Code, err)
		}
		return fmt.Errorf("plugin %q: CNI STATUS failed (CNI error %d): %w", plugin, te.Code, err)
	}
	return fmt.Errorf("plugin %q: CNI STATUS failed: %w", plugin, err)
}
