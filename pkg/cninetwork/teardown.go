package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// TearDownPod detaches the pod from every network it was set up on, with the configuration and
// runtime arguments that set-up ran with, so a pod is torn down on the networks it joined even
// after the default network changed or its file was deleted: those of the Plugin's record of
// the sandbox (see WithStateDir), written before the set-up's first plugin ran, so a set-up cut
// off by a crash or whose rollback failed is covered too, and those libcni cached for the
// sandbox that no record covers. The pod's networks are deleted side by side (libcni deletes
// each chain in reverse), each chain in a slot of the DEL lane of its own, the built-in
// loopback network last. A sandbox with nothing recorded or cached gets no DEL: a pod is never
// torn down with a configuration other than its own, and a set-up leaves a record before its
// first plugin runs.
//
// Plugins get pod.NetNS if it still is a network namespace, else the empty path (plugins then
// release what they hold outside the netns); when pod.NetNS is empty, each attachment's own
// netns, as recorded at set-up, if it still is one.
//
// TearDownPod is idempotent: a pod whose netns is gone, a second teardown, and a pod never set
// up all succeed. Only pod.SandboxID and pod.NetNS are read. A failure of the built-in loopback network is not
// an error (its cache entry is removed all the same). A failed teardown keeps the record and
// libcni's cache entries of the networks that failed, so it can be retried.
func (p *Plugin) TearDownPod(ctx context.Context, pod *Pod) (retErr error) {
	o := p.begin(ctx, opTearDown, pod)
	var torn []string
	defer func() { o.end(retErr, "Tore down pod network", "networks", torn) }()
	if err := checkSandboxID(pod); err != nil {
		return err
	}
	wait, cancel := p.waitContext(ctx)
	defer cancel()
	unlock, err := o.lock(wait)
	if err != nil {
		return err
	}
	defer unlock()

	cached, err := p.cni.GetCachedAttachments(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: read CNI cache: %w", pod, err)
	}
	recorded, err := p.records.get(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: %w", pod, err)
	}
	netnsOf := cachedNetNS
	if pod.NetNS != "" {
		ns := ""
		if ok, _ := netns.IsNetNS(pod.NetNS); ok {
			ns = pod.NetNS
		}
		netnsOf = func(*libcni.NetworkAttachment) string { return ns }
	}

	torn, errs := p.delAttachments(ctx, ctx, teardownOrder(cached, recorded), netnsOf, o.logger)
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", pod, errors.Join(errs...))
	}
	if err := p.records.remove(pod.SandboxID); err != nil {
		return fmt.Errorf("%s: %w", pod, err)
	}
	p.statusMu.Lock()
	delete(p.pods, pod.SandboxID)
	p.statusMu.Unlock()
	return nil
}

// delAttachments deletes atts in their order, the pod's networks side by side and the
// built-in loopback network alone (see inWaves), each with its own configuration and runtime arguments and the netns netnsOf
// returns for it. A failure of the built-in loopback network is only logged, and its libcni
// cache entry removed so that the sandbox does not look set up.
func (p *Plugin) delAttachments(wait, ctx context.Context, atts []*libcni.NetworkAttachment, netnsOf func(*libcni.NetworkAttachment) string, logger klog.Logger) (done []string, errs []error) {
	ok := make([]bool, len(atts))
	errOf := make([]error, len(atts))
	inWaves(len(atts), func(i int) bool { return sideBySide(atts[i].Network, atts[i].IfName) }, func(i int) {
		ok[i], errOf[i] = p.delAttachment(wait, ctx, atts[i], netnsOf(atts[i]), logger)
	})
	for i, a := range atts {
		if errOf[i] != nil {
			errs = append(errs, errOf[i])
		} else if ok[i] {
			done = append(done, a.Network)
		}
	}
	return done, errs
}

// delAttachment deletes a in the netns at nsPath; ok reports whether its DEL succeeded.
func (p *Plugin) delAttachment(wait, ctx context.Context, a *libcni.NetworkAttachment, nsPath string, logger klog.Logger) (ok bool, err error) {
	start := time.Now()
	list, rt, err := cachedInvocation(a, nsPath)
	if err != nil {
		return false, err
	}
	err = p.inSlot(wait, ctx, laneDel, a.Network, "DEL", func(ctx context.Context) error {
		tctx, tr := withTrace(ctx)
		if err := p.cni.DelNetworkList(tctx, list, rt); err != nil {
			return chainError(tctx, start, a.Network, "DEL", tr, false, err)
		}
		return nil
	})
	if err != nil {
		if isLoopback(a) {
			logger.V(4).Info("Ignoring loopback teardown failure", "err", err)
			return false, p.removeCacheEntry(a)
		}
		return false, err
	}
	return true, nil
}

// cachedInvocation returns the configuration and runtime arguments libcni cached for a at
// ADD, to run another command of a in the netns at nsPath. A cached configuration that does
// not parse, or is of another network, is an error naming the network and interface.
func cachedInvocation(a *libcni.NetworkAttachment, nsPath string) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	list, err := libcni.ConfListFromBytes(a.Config)
	if err == nil && list.Name != a.Network {
		err = fmt.Errorf("cached configuration is of network %q", list.Name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("network %q: cached configuration of interface %s: %w", a.Network, a.IfName, err)
	}
	return list, &libcni.RuntimeConf{
		ContainerID:    a.ContainerID,
		NetNS:          nsPath,
		IfName:         a.IfName,
		Args:           a.CniArgs,
		CapabilityArgs: a.CapabilityArgs,
	}, nil
}

// removeCacheEntry removes libcni's cache entry of a, as a successful DEL would have. libcni
// has no call for it; the path is the one its CNIConfig reads and writes.
func (p *Plugin) removeCacheEntry(a *libcni.NetworkAttachment) error {
	path := filepath.Join(p.opts.cacheDir, "results", a.Network+"-"+a.ContainerID+"-"+a.IfName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network %q: remove cache entry of interface %s: %w", a.Network, a.IfName, err)
	}
	return nil
}

// sortForTeardown orders cached attachments that no record covers for deletion: the loopback
// network last, the others by interface name, highest first (eth2, eth1, eth0), as the
// set-up order is not known.
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
	return a.Network == loopbackNetworkName && a.IfName == "lo"
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
