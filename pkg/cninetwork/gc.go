package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"k8s.io/klog/v2"
)

// GC removes what pod sandboxes that are gone left behind, given the IDs of the sandboxes that
// still exist:
//
//  1. Every attachment libcni cached for a sandbox not in validSandboxIDs is deleted with the
//     configuration and arguments cached at its ADD, whether or not its network still exists,
//     and so is every attachment recorded for such a sandbox by a set-up that never completed;
//     a sandbox with an operation in flight is left for the next GC.
//  2. Every valid network of cniVersion 1.1.0 or later gets a CNI GC, so its plugins release
//     what no remaining attachment holds. Setups wait while this runs (a setup not yet
//     cached would otherwise look stale), and setups in flight finish before it starts.
//
// GC fails without deleting anything if libcni's cache or the set-up records cannot be listed.
// It is capped by the operation timeout.
func (p *Plugin) GC(ctx context.Context, validSandboxIDs []string) (retErr error) {
	start := time.Now()
	defer func() { p.metrics.observe(opGC, start, retErr != nil) }()
	logger := klog.FromContext(ctx)
	var deleted, busy []string
	defer func() {
		logger.V(4).Info("Garbage-collected pod networks", "deletedSandboxes", deleted, "busySandboxes", busy,
			"duration", time.Since(start), "ok", retErr == nil)
	}()
	valid := make(map[string]bool, len(validSandboxIDs))
	for _, id := range validSandboxIDs {
		valid[id] = true
	}

	ctx, cancel := context.WithTimeout(ctx, p.opts.operationTimeout)
	defer cancel()
	release, err := p.admit(ctx, laneGC)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GC: %w: %w", ErrTimeout, err)
		}
		return fmt.Errorf("GC: %w", err)
	}
	defer release()
	snap := p.source.Snapshot()

	// Phase 1: stale sandboxes, one at a time under their locks.
	cached, err := p.cni.GetCachedAttachments("")
	if err != nil {
		return fmt.Errorf("GC: read CNI cache: %w", err)
	}
	pendingIDs, err := p.pending.list()
	if err != nil {
		return fmt.Errorf("GC: %w", err)
	}
	var stale []string
	for _, a := range cached {
		if !valid[a.ContainerID] && !slices.Contains(stale, a.ContainerID) {
			stale = append(stale, a.ContainerID)
		}
	}
	// A set-up in flight has a record too. If it completes between this listing and the lock
	// below, its record is gone by then: onlyRecorded marks the IDs to skip in that case.
	onlyRecorded := map[string]bool{}
	for _, id := range pendingIDs {
		if !valid[id] && !slices.Contains(stale, id) {
			stale = append(stale, id)
			onlyRecorded[id] = true
		}
	}
	slices.Sort(stale)
	if p.testHookGCStale != nil {
		p.testHookGCStale()
	}
	var errs []error
	for _, id := range stale {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("GC: %w before sandbox %s: %w", ErrTimeout, id, ctx.Err()))
			break
		}
		unlock, ok := p.locks.tryLock(id)
		if !ok {
			busy = append(busy, id)
			continue
		}
		atts, err := p.cni.GetCachedAttachments(id)
		if err != nil {
			unlock()
			errs = append(errs, fmt.Errorf("GC: sandbox %s: read CNI cache: %w", id, err))
			continue
		}
		pending, err := p.pending.get(id)
		if err != nil {
			unlock()
			errs = append(errs, fmt.Errorf("GC: sandbox %s: %w", id, err))
			continue
		}
		if onlyRecorded[id] && len(pending) == 0 {
			// Its set-up finished or was rolled back since the listing (it was in flight), or
			// its record is empty (written just before a power loss): there is nothing to
			// delete by it. Remove an empty record; a finished set-up's is gone already.
			err := p.pending.remove(id)
			unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("GC: sandbox %s: %w", id, err))
			}
			continue
		}
		_, derrs := p.delCached(ctx, withPending(atts, pending), cachedNetNS, logger)
		if len(derrs) == 0 {
			if err := p.pending.remove(id); err != nil {
				derrs = append(derrs, err)
			}
		}
		if len(derrs) == 0 {
			deleted = append(deleted, id)
			p.statusMu.Lock()
			delete(p.pods, id)
			p.statusMu.Unlock()
		}
		unlock()
		for _, e := range derrs {
			errs = append(errs, fmt.Errorf("GC: sandbox %s: %w", id, e))
		}
	}

	// Phase 2: CNI GC of the networks that support it.
	var gcNets []*libcni.NetworkConfigList
	if snap != nil {
		for _, n := range snap.Networks {
			if ok, _ := version.GreaterThanOrEqualTo(n.CNIVersion, "1.1.0"); ok && !n.Config.DisableGC {
				gcNets = append(gcNets, p.listFor(n))
			}
		}
	}
	if len(gcNets) > 0 {
		errs = append(errs, p.gcNetworks(ctx, gcNets, valid)...)
	}
	return errors.Join(errs...)
}

// gcNetworks runs CNI GC on lists, with every attachment still cached (and every attachment in
// memory of a valid sandbox) as the valid ones. It holds gcGate's write side throughout.
func (p *Plugin) gcNetworks(ctx context.Context, lists []*libcni.NetworkConfigList, valid map[string]bool) []error {
	if p.testHookGCGate != nil {
		p.testHookGCGate()
	}
	p.gcGate.Lock()
	defer p.gcGate.Unlock()
	// Read again under the gate: setups that finished since phase 1 are cached now, and
	// sandboxes phase 1 skipped are still cached. libcni's GCNetworkList ignores a failure to
	// read the cache; here it stops the GC, as the valid set would be incomplete.
	cached, err := p.cni.GetCachedAttachments("")
	if err != nil {
		return []error{fmt.Errorf("GC: read CNI cache: %w", err)}
	}
	seen := make(map[types.GCAttachment]bool, len(cached))
	attachments := make([]types.GCAttachment, 0, len(cached))
	add := func(a types.GCAttachment) {
		if !seen[a] {
			seen[a] = true
			attachments = append(attachments, a)
		}
	}
	for _, a := range cached {
		add(types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	p.statusMu.Lock()
	for id, st := range p.pods {
		if valid[id] {
			for _, a := range st.Attachments {
				add(types.GCAttachment{ContainerID: id, IfName: a.IfName})
			}
		}
	}
	p.statusMu.Unlock()

	var errs []error
	for _, list := range lists {
		start := time.Now()
		tctx, tr := withTrace(ctx)
		if err := p.cni.GCNetworkList(tctx, list, &libcni.GCArgs{ValidAttachments: attachments}); err != nil {
			errs = append(errs, fmt.Errorf("GC: %w", chainError(tctx, start, list.Name, "GC", tr, false, err)))
		}
	}
	return errs
}

// cachedNetNS returns the netns an attachment was set up in if it still is one, else "".
func cachedNetNS(a *libcni.NetworkAttachment) string {
	if a.NetNS != "" && checkNetNS(a.NetNS) == nil {
		return a.NetNS
	}
	return ""
}
