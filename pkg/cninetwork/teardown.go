package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cnishim/cnishim/internal/cniargs"
	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// TearDownPod detaches the pod from every network it was set up on, with the configuration and
// runtime arguments libcni cached when it was set up, so a pod is torn down on the network it
// joined even after the default network changed or its file was deleted. A set-up that never
// completed (cut off by a crash of the process, or whose rollback failed) left no such cache
// entry; its attachments are deleted with the configuration and arguments SetUpPod recorded
// before running any plugin. Only when nothing is cached or recorded for the sandbox does it
// fall back to the current default network and pod's extra networks, with arguments built
// from pod. The netns is passed to plugins if it still is one, else the empty path (plugins
// then release what they hold outside the netns).
//
// TearDownPod is idempotent: a pod whose netns is gone, a second teardown, and a pod never set
// up all succeed. Only pod.SandboxID is needed when the sandbox is cached or recorded; pod's
// other fields are used for the fallback. A failure of the built-in loopback network is not
// an error. A failed teardown keeps libcni's cache entries of the networks that failed, and
// the set-up record, so it can be retried.
func (p *Plugin) TearDownPod(ctx context.Context, pod *Pod) (retErr error) {
	start := time.Now()
	defer func() { p.metrics.observe(opTearDown, start, retErr != nil) }()
	if err := checkSandboxID(pod); err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("pod", klog.KObj(pod), "podSandboxID", pod.SandboxID)
	var torn []string
	defer func() {
		logger.V(4).Info("Tore down pod network", "networks", torn, "duration", time.Since(start), "ok", retErr == nil)
	}()

	ctx, cancel := context.WithTimeout(ctx, p.opts.operationTimeout)
	defer cancel()
	unlock, err := p.locks.lock(ctx, pod.SandboxID)
	if err != nil {
		return p.waitError(pod, start, err)
	}
	defer unlock()

	release, err := p.admit(ctx, laneDel)
	if err != nil {
		return p.waitError(pod, start, err)
	}
	defer release()

	cached, err := p.cni.GetCachedAttachments(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: read CNI cache: %w", pod, err)
	}
	netns := ""
	if pod.NetNS != "" && checkNetNS(pod.NetNS) == nil {
		netns = pod.NetNS
	}

	pending, err := p.pending.get(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: %w", pod, err)
	}
	atts := withPending(cached, pending)

	var errs []error
	if len(atts) > 0 {
		torn, errs = p.delCached(ctx, atts, func(*libcni.NetworkAttachment) string { return netns }, logger)
	} else {
		torn, errs = p.delFallback(ctx, pod, netns)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", pod, errors.Join(errs...))
	}
	if err := p.pending.remove(pod.SandboxID); err != nil {
		return fmt.Errorf("%s: %w", pod, err)
	}
	p.statusMu.Lock()
	delete(p.pods, pod.SandboxID)
	p.statusMu.Unlock()
	return nil
}

// delCached deletes every cached attachment, each with its cached configuration and runtime
// arguments and the netns netnsOf returns for it: the sandbox's networks in the reverse order of their interfaces, then the built-in
// loopback network, whose failure is only logged.
func (p *Plugin) delCached(ctx context.Context, cached []*libcni.NetworkAttachment, netnsOf func(*libcni.NetworkAttachment) string, logger klog.Logger) (done []string, errs []error) {
	sortForTeardown(cached)
	for _, a := range cached {
		start := time.Now()
		list, err := libcni.ConfListFromBytes(a.Config)
		if err == nil && list.Name != a.Network {
			err = fmt.Errorf("cached configuration is of network %q", list.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network %q: cached configuration of interface %s: %w", a.Network, a.IfName, err))
			continue
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    a.ContainerID,
			NetNS:          netnsOf(a),
			IfName:         a.IfName,
			Args:           a.CniArgs,
			CapabilityArgs: a.CapabilityArgs,
		}
		tctx, tr := withTrace(ctx)
		if err := p.cni.DelNetworkList(tctx, list, rt); err != nil {
			err = chainError(tctx, start, a.Network, "DEL", tr, false, err)
			if a.Network == LoopbackNetworkName && a.IfName == "lo" {
				logger.V(4).Info("Ignoring loopback teardown failure", "err", err)
				continue
			}
			errs = append(errs, err)
			continue
		}
		done = append(done, a.Network)
	}
	return done, errs
}

// sortForTeardown orders cached attachments for deletion: the loopback network last, the
// others by interface name, highest first (eth2, eth1, eth0), undoing the setup order.
func sortForTeardown(as []*libcni.NetworkAttachment) {
	sort.SliceStable(as, func(i, j int) bool {
		li, lj := isLoopback(as[i]), isLoopback(as[j])
		if li != lj {
			return lj
		}
		return ifNameLess(as[j].IfName, as[i].IfName)
	})
}

func isLoopback(a *libcni.NetworkAttachment) bool {
	return a.Network == LoopbackNetworkName && a.IfName == "lo"
}

// ifNameLess orders interface names with their numeric suffixes compared as numbers, so eth2
// sorts before eth10.
func ifNameLess(a, b string) bool {
	pa, na := splitIfName(a)
	pb, nb := splitIfName(b)
	if pa != pb {
		return pa < pb
	}
	if na != nb {
		return na < nb
	}
	return a < b
}

func splitIfName(s string) (prefix string, n int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 9 {
		return s, -1
	}
	for _, c := range s[i:] {
		n = n*10 + int(c-'0')
	}
	return s[:i], n
}

// delFallback deletes the pod from the current default network and its extra networks, with
// arguments built from pod, when nothing is cached for it: the sandbox was set up before
// libcni cached attachments, or never, or is already torn down (plugins must accept a DEL for
// what they do not know). Capability args that do not check out are dropped rather than fail
// the teardown.
func (p *Plugin) delFallback(ctx context.Context, pod *Pod, netns string) (done []string, errs []error) {
	snap := p.source.Snapshot()
	if snap == nil || snap.Default == nil {
		return nil, nil // no network known: nothing this plugin could have set up
	}
	args, err := podCNIArgs(pod)
	if err != nil {
		// SetUpPod refuses such a pod (a name, namespace or UID that CNI_ARGS cannot carry)
		// before any plugin runs, so it set nothing up. The plugins still get their DEL, with
		// the sandbox ID alone, so that the rollback of the refused set-up, and any later
		// teardown, succeed.
		args = [][2]string{{cniargs.KeyIgnoreUnknown, "1"}, {cniargs.KeySandboxID, pod.SandboxID}}
	}
	caps, err := podCaps(pod, *p.podCIDRs.Load())
	if err != nil {
		caps = nil // SetUpPod refuses such a pod, so it never set one up
	}
	pa := &podArgs{cniArgs: args, caps: caps}
	plan, err := p.plan(snap, pod)
	if err != nil {
		// Only the default network: the extra networks asked for may be gone or malformed.
		plan = []attachment{p.attachmentFor(snap.Default, defaultIfName)}
	}
	for i := len(plan) - 1; i >= 0; i-- {
		a := plan[i]
		start := time.Now()
		rt := runtimeConf(pod.SandboxID, pa, a.caps, a.ifName, netns)
		tctx, tr := withTrace(ctx)
		if err := p.cni.DelNetworkList(tctx, a.list, rt); err != nil {
			errs = append(errs, chainError(tctx, start, a.network, "DEL", tr, false, err))
			continue
		}
		done = append(done, a.network)
	}
	return done, errs
}
