package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"k8s.io/klog/v2"
)

// GC removes what pod sandboxes that are gone left behind. valid returns the IDs of the
// sandboxes that still exist; GC calls it once, after it has listed its records, so a sandbox
// whose set-up starts later is never taken for gone, and a caller that keeps creating
// sandboxes meanwhile need not stop: valid needs to hold only the sandboxes that exist when
// it is called. If valid fails, GC does nothing and returns its error. A nil valid means no
// sandbox exists any more.
//
// GC touches only what this Plugin can prove it made: libcni's cache directory is shared by
// every runtime on the node (the kubelet, containerd, CRI-O, podman, nerdctl), so an
// attachment cached there, whoever made it, is never taken for stale by its absence from
// valid's answer. GC goes in two steps:
//
//  1. Every sandbox this Plugin holds a record of (see WithStateDir) that valid does not
//     name has its recorded attachments deleted, each with the configuration and
//     arguments it was set up with, whether or not its network still exists, except those on a
//     network with disableGC, which are kept (and stay recorded) as the CNI spec asks. A
//     sandbox with an operation in flight is left for the next GC.
//  2. Every valid network of cniVersion 1.1.0 or later without disableGC gets a CNI GC, so its
//     plugins release what no remaining attachment holds. The valid attachments are every
//     attachment recorded by this Plugin plus every attachment in libcni's cache, another
//     runtime's included, read anew right before each network. Nothing is DELeted in this
//     step: unlike libcni's GCNetworkList, GC never deletes a cached attachment for not being
//     valid, as another runtime may have made it since. Set-ups of this Plugin wait while
//     this runs (one whose attachment is not yet recorded would otherwise look stale), and
//     set-ups that came before it finish first.
//
// GC fails without deleting anything if the records cannot be listed, and step 2 does not run
// if a record or libcni's cache cannot be read, as its valid set would be incomplete. It waits
// for a slot of the GC lane as every operation waits for its slots, and its whole pass is
// capped by the operation timeout from then on; its deletions of stale sandboxes take slots of
// the DEL lane. Step 2 waits at most 10 s for the set-ups that came before it (it holds new ones
// back meanwhile); if they are still running then, it does not run, and GC says so.
//
// A network that other runtimes attach pods to as well must set disableGC (as the spec says),
// or be collected by one of them only: step 2 cannot see another runtime's set-ups in flight.
func (p *Plugin) GC(ctx context.Context, valid func(context.Context) ([]string, error)) (retErr error) {
	if valid == nil {
		valid = func(context.Context) ([]string, error) { return nil, nil }
	}
	start := time.Now()
	defer func() { p.metrics.observe(opGC, start, retErr != nil) }()
	logger := klog.FromContext(ctx)
	var res gcResult
	defer func() {
		logger.V(4).Info("Garbage-collected pod networks", "deletedSandboxes", res.deleted, "busySandboxes", res.busy,
			"keptForDisableGC", res.kept, "duration", time.Since(start), "ok", retErr == nil)
	}()

	wctx, cancel := p.waitContext(ctx)
	defer cancel()
	release, err := p.admit(wctx, laneGC)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GC: %w: %w", ErrTimeout, err)
		}
		return fmt.Errorf("GC: %w", err)
	}
	defer release()
	ctx, cancelPass := p.chainContext(ctx)
	defer cancelPass()
	snap := p.source.Snapshot()

	stale, err := p.staleSandboxes(ctx, valid, &res)
	if err != nil {
		return err
	}
	errs := p.collectStale(ctx, stale, &res, logger)
	if lists := p.gcLists(snap); len(lists) > 0 {
		errs = append(errs, p.gcNetworks(ctx, lists)...)
	}
	return errors.Join(errs...)
}

// collectStale collects the stale sandboxes one by one (see collectSandbox) until ctx ends.
func (p *Plugin) collectStale(ctx context.Context, stale []string, res *gcResult, logger klog.Logger) []error {
	var errs []error
	for _, id := range stale {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("GC: %w before sandbox %s: %w", ErrTimeout, id, ctx.Err()))
			break
		}
		if err := p.collectSandbox(ctx, id, res, logger); err != nil {
			errs = append(errs, fmt.Errorf("GC: sandbox %s: %w", id, err))
		}
	}
	return errs
}

// gcLists returns the libcni lists of snap's networks that get a CNI GC: those of cniVersion
// 1.1.0 or later without disableGC.
func (p *Plugin) gcLists(snap *confwatch.Snapshot) []*libcni.NetworkConfigList {
	if snap == nil {
		return nil
	}
	var lists []*libcni.NetworkConfigList
	for _, n := range snap.Networks {
		if ok, _ := version.GreaterThanOrEqualTo(n.CNIVersion, "1.1.0"); ok && !n.Config.DisableGC {
			lists = append(lists, p.listFor(n))
		}
	}
	return lists
}

// gcResult is what a GC did, for its log line.
type gcResult struct {
	deleted, busy, kept []string
}

// staleSandboxes lists the sandboxes recorded by this Plugin that valid does not name. A
// sandbox with an operation in flight at the listing is left out: its set-up may complete
// before valid is taken.
func (p *Plugin) staleSandboxes(ctx context.Context, valid func(context.Context) ([]string, error), res *gcResult) ([]string, error) {
	ids, err := p.records.list()
	if err != nil {
		return nil, fmt.Errorf("GC: %w", err)
	}
	busy := p.locks.Busy()
	validIDs, err := valid(ctx)
	if err != nil {
		return nil, fmt.Errorf("GC: valid sandboxes: %w", err)
	}
	isValid := make(map[string]bool, len(validIDs))
	for _, id := range validIDs {
		isValid[id] = true
	}
	var stale []string
	for _, id := range ids {
		switch {
		case isValid[id]:
		case busy[id]:
			res.busy = append(res.busy, id)
		default:
			stale = append(stale, id)
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// collectSandbox deletes the recorded attachments of a stale sandbox, under its lock, except
// those on a network with disableGC, which stay recorded.
func (p *Plugin) collectSandbox(ctx context.Context, id string, res *gcResult, logger klog.Logger) error {
	unlock, ok := p.locks.TryLock(id)
	if !ok {
		res.busy = append(res.busy, id)
		return nil
	}
	defer unlock()
	recorded, err := p.records.get(id)
	if err != nil {
		return err
	}
	if len(recorded) == 0 {
		// Torn down since the listing, or an empty record (written just before a power
		// loss): there is nothing to delete by it. Remove an empty one.
		return p.records.remove(id)
	}
	var del, keep []*libcni.NetworkAttachment
	for _, a := range recorded {
		if list, err := libcni.ConfListFromBytes(a.Config); err == nil && list.DisableGC {
			keep = append(keep, a)
		} else {
			del = append(del, a) // an unparsable one fails its DEL, naming the network
		}
	}
	// Only what the record names, whatever libcni caches under the same ID.
	// The pass's budget bounds the waits and the chains alike.
	_, errs := p.delAttachments(ctx, ctx, teardownOrder(nil, del), cachedNetNS, logger)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(keep) > 0 {
		res.kept = append(res.kept, id)
		if len(del) == 0 {
			return nil // the record already names just these
		}
		return p.records.put(id, keep)
	}
	if err := p.records.remove(id); err != nil {
		return err
	}
	res.deleted = append(res.deleted, id)
	p.statusMu.Lock()
	delete(p.pods, id)
	p.statusMu.Unlock()
	return nil
}

// gcNetworks runs CNI GC on lists while it holds the GC gate, network after network, each with
// the valid attachments read right before it: every attachment this Plugin records and every
// attachment in libcni's cache, so that an attachment another runtime made while an earlier
// network was collected counts as valid.
func (p *Plugin) gcNetworks(ctx context.Context, lists []*libcni.NetworkConfigList) []error {
	// While GC waits for the set-ups before it, it holds new ones back: a set-up stuck in a
	// plugin must not hold the node's set-ups back for the rest of its budget.
	lctx, cancel := context.WithTimeout(ctx, p.opts.gcGateWait)
	err := p.gate.lock(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			return []error{fmt.Errorf("GC: set-ups still running after %s, so the plugins' GC did not run; run GC again later: %w", p.opts.gcGateWait, err)}
		}
		return []error{fmt.Errorf("GC: %w", err)}
	}
	defer p.gate.unlock()
	recorded, err := p.recordedValid()
	if err != nil {
		return []error{fmt.Errorf("GC: %w", err)}
	}
	var errs []error
	for _, list := range lists {
		attachments, err := p.validAttachments(recorded)
		if err != nil {
			return append(errs, fmt.Errorf("GC: network %q: %w", list.Name, err))
		}
		start := time.Now()
		tctx, tr := withTrace(ctx)
		if err := p.gcPlugins(tctx, list, attachments); err != nil {
			errs = append(errs, fmt.Errorf("GC: %w", chainError(tctx, start, list.Name, "GC", tr, true, err)))
		}
	}
	return errs
}

// gcPlugins sends CNI GC to each plugin of list, in order, with valid as the valid
// attachments, as the CNI spec says and as libcni's GCNetworkList does, but without
// GCNetworkList's first step, which DELs every attachment of the network in libcni's cache
// that valid does not name, the cache being read anew when it runs: the cache is shared by
// every runtime on the node, so an attachment another runtime made after valid was read would
// be deleted. This Plugin's own stale attachments were already deleted by their records
// (see GC). A plugin that fails does not stop the others; the error names each.
func (p *Plugin) gcPlugins(ctx context.Context, list *libcni.NetworkConfigList, valid []types.GCAttachment) error {
	inject := map[string]any{
		"name":                      list.Name,
		"cniVersion":                list.CNIVersion,
		"cni.dev/valid-attachments": valid,
		// The name the spec's first text of GC used, which plugins may still read (libcni
		// sends both).
		"cni.dev/attachments": valid,
	}
	args := &invoke.Args{Command: "GC", Path: strings.Join(p.opts.binDirs, string(os.PathListSeparator))}
	var errs []error
	for _, pc := range list.Plugins {
		conf, err := libcni.InjectConf(pc, inject)
		if err == nil {
			var path string
			if path, err = p.exec.FindInPath(pc.Network.Type, p.opts.binDirs); err == nil {
				err = invoke.ExecPluginWithoutResult(ctx, path, conf.Bytes, args, p.exec)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s: %w", pc.Network.Type, err))
		}
	}
	return errors.Join(errs...)
}

// recordedValid returns every attachment recorded by this Plugin. Read under the gate, the
// records hold every set-up that may have attached anything, whatever libcni cached (a cache
// entry that cannot be read is skipped by libcni, so the cache alone could leave a running pod
// out), and no set-up can add to them until the gate is released.
func (p *Plugin) recordedValid() ([]types.GCAttachment, error) {
	ids, err := p.records.list()
	if err != nil {
		return nil, err
	}
	var out []types.GCAttachment
	for _, id := range ids {
		recorded, err := p.records.get(id)
		if err != nil {
			return nil, err
		}
		for _, a := range recorded {
			out = append(out, types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
		}
	}
	return out, nil
}

// validAttachments returns recorded together with every attachment in libcni's cache, read
// now, each once: what no plugin may release.
func (p *Plugin) validAttachments(recorded []types.GCAttachment) ([]types.GCAttachment, error) {
	cached, err := p.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("read CNI cache: %w", err)
	}
	seen := make(map[types.GCAttachment]bool, len(cached)+len(recorded))
	out := make([]types.GCAttachment, 0, len(cached)+len(recorded))
	add := func(ga types.GCAttachment) {
		if !seen[ga] {
			seen[ga] = true
			out = append(out, ga)
		}
	}
	for _, ga := range recorded {
		add(ga)
	}
	for _, a := range cached {
		add(types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return out, nil
}

// cachedNetNS returns the netns an attachment was set up in if it still is one, else "".
func cachedNetNS(a *libcni.NetworkAttachment) string {
	if a.NetNS == "" {
		return ""
	}
	if ok, _ := netns.IsNetNS(a.NetNS); !ok {
		return ""
	}
	return a.NetNS
}
