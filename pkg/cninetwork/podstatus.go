package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// GetPodNetworkStatus returns the pod's network status: from memory for a pod this Plugin set
// up, else from the results libcni cached at ADD (after a restart). It never enters the netns,
// execs a plugin or waits for another operation on the sandbox. Only pod.SandboxID is used. A
// sandbox with no known network gets an error wrapping ErrUnknownSandbox. The caller may modify
// the returned status.
func (p *Plugin) GetPodNetworkStatus(ctx context.Context, pod *Pod) (*PodNetworkStatus, error) {
	// The runtime asks for this on every PodSandboxStatus, so the path from memory allocates
	// only the copy it returns: the log line's values are built only when it is enabled.
	start := time.Now()
	status, err := p.podNetworkStatus(pod)
	p.metrics.observe(opPodStatus, start, err != nil && !errors.Is(err, ErrUnknownSandbox))
	if logger := klog.FromContext(ctx); logger.V(4).Enabled() {
		logger.V(4).Info("Got pod network status", "pod", klog.KObj(pod), "podSandboxID", podSandboxID(pod),
			"ips", ipStrings(status), "duration", time.Since(start), "ok", err == nil)
	}
	return status, err
}

func (p *Plugin) podNetworkStatus(pod *Pod) (*PodNetworkStatus, error) {
	if pod != nil && pod.SandboxID != "" {
		// Only a valid sandbox ID was ever set up, so one found here needs no other check.
		p.statusMu.Lock()
		st := p.pods[pod.SandboxID]
		p.statusMu.Unlock()
		if st != nil {
			return st.clone(), nil
		}
	}
	if err := checkSandboxID(pod); err != nil {
		return nil, err
	}
	// Not kept in memory: a teardown may run meanwhile, and only setups fill the memory.
	return p.statusFromCache(pod)
}

// podSandboxID is pod's sandbox ID, or "" for a nil pod.
func podSandboxID(pod *Pod) string {
	if pod == nil {
		return ""
	}
	return pod.SandboxID
}

// statusFromCache rebuilds a pod's status from libcni's cache. The default network's
// attachment is the one on eth0; the others follow by interface name.
func (p *Plugin) statusFromCache(pod *Pod) (*PodNetworkStatus, error) {
	cached, err := p.cni.GetCachedAttachments(pod.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("%s: read CNI cache: %w", pod, err)
	}
	atts := make([]*libcni.NetworkAttachment, 0, len(cached))
	for _, a := range cached {
		if !isLoopback(a) {
			atts = append(atts, a)
		}
	}
	if len(atts) == 0 {
		return nil, fmt.Errorf("%s: %w", pod, ErrUnknownSandbox)
	}
	sort.SliceStable(atts, func(i, j int) bool {
		if (atts[i].IfName == defaultIfName) != (atts[j].IfName == defaultIfName) {
			return atts[i].IfName == defaultIfName
		}
		return ifNameLess(atts[i].IfName, atts[j].IfName)
	})
	st := &PodNetworkStatus{Attachments: make([]AttachmentStatus, 0, len(atts))}
	for _, a := range atts {
		list, rt, err := cachedInvocation(a, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pod, err)
		}
		res, err := p.cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return nil, fmt.Errorf("%s: network %q: cached result of interface %s: %w", pod, a.Network, a.IfName, err)
		}
		as, err := attachmentStatus(res, a.Network, a.IfName)
		if err != nil {
			return nil, fmt.Errorf("%s: network %q: cached result of interface %s: %w", pod, a.Network, a.IfName, err)
		}
		st.Attachments = append(st.Attachments, as)
	}
	st.IPs = st.Attachments[0].IPs
	st.Attachments[0].Default = true // the cache does not say whether a default-route moved it
	return st, nil
}
