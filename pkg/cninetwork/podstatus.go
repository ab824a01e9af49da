package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"k8s.io/klog/v2"
)

// PodNetworkStatus is what the plugin knows of a pod's network.
type PodNetworkStatus struct {
	// IPs holds the pod's IPs on its default network: the first IPv4, then the first IPv6,
	// then the rest, as the kubelet orders them.
	IPs []net.IP
	// Attachments holds one entry per network the pod is attached to, the default first.
	Attachments []AttachmentStatus
}

// AttachmentStatus is the result of attaching a pod to one network.
type AttachmentStatus struct {
	// Network is the network's name.
	Network string
	// IfName is the pod's interface on that network.
	IfName string
	// IPs holds the addresses the network gave the pod's interface.
	IPs []net.IP
	// MAC is the MAC address of the pod's interface, as the network's result gives it; empty if
	// it gives none.
	MAC string
	// DNS holds the DNS settings the network's result gives, or nil.
	DNS *types.DNS
	// Default reports that the pod's default route goes through this attachment: true for
	// the extra networks whose DefaultRoute SetUpPod applied, and for the default network
	// unless they replaced the default route of every IP family it has an address of. A
	// status rebuilt from libcni's cache (after the Plugin restarted) marks the default
	// network alone.
	Default bool
}

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

// clone returns a deep copy of s, which the caller may modify.
func (s *PodNetworkStatus) clone() *PodNetworkStatus {
	if s == nil {
		return nil
	}
	// One array for every IP header and one for every address byte, whatever the number of
	// attachments: the copy costs four allocations.
	n, size := len(s.IPs), ipBytes(s.IPs)
	for _, a := range s.Attachments {
		n += len(a.IPs)
		size += ipBytes(a.IPs)
	}
	ips, buf := make([]net.IP, 0, n), make([]byte, 0, size)
	copyIPs := func(in []net.IP) []net.IP {
		if in == nil {
			return nil
		}
		start := len(ips)
		for _, ip := range in {
			from := len(buf)
			buf = append(buf, ip...)
			ips = append(ips, buf[from:len(buf):len(buf)])
		}
		return ips[start:len(ips):len(ips)]
	}
	out := &PodNetworkStatus{IPs: copyIPs(s.IPs), Attachments: make([]AttachmentStatus, len(s.Attachments))}
	for i, a := range s.Attachments {
		out.Attachments[i] = AttachmentStatus{Network: a.Network, IfName: a.IfName, IPs: copyIPs(a.IPs), MAC: a.MAC, Default: a.Default}
		if a.DNS != nil {
			out.Attachments[i].DNS = a.DNS.Copy()
		}
	}
	return out
}

func ipBytes(ips []net.IP) int {
	n := 0
	for _, ip := range ips {
		n += len(ip)
	}
	return n
}

func ipStrings(s *PodNetworkStatus) []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.IPs))
	for i, ip := range s.IPs {
		out[i] = ip.String()
	}
	return out
}

// resultIPs returns the pod's addresses from a plugin chain's result of any version: the IPs
// on interfaces inside the sandbox, and IPs that name no interface. IPs naming an interface
// outside the sandbox (a host-side veth or bridge), or an interface index outside the result's
// interface list, are not the pod's and are left out. The order is the kubelet's: see
// orderIPs. A nil result has no IPs.
func resultIPs(res types.Result) ([]net.IP, error) {
	if res == nil {
		return nil, nil
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("result version %q: %w", res.Version(), err)
	}
	var ips []net.IP
	for _, ipc := range cur.IPs {
		if ipc == nil || ipc.Address.IP == nil {
			continue
		}
		if ipc.Interface != nil {
			idx := *ipc.Interface
			if idx < 0 || idx >= len(cur.Interfaces) || cur.Interfaces[idx] == nil {
				continue
			}
			if cur.Interfaces[idx].Sandbox == "" {
				continue
			}
		}
		ips = append(ips, ipc.Address.IP)
	}
	return orderIPs(ips), nil
}

// orderIPs orders a pod's IPs as the kubelet reports them: the first IPv4 address, then the
// first IPv6 address, then the others in their original order. It reorders ips in place and
// returns it.
func orderIPs(ips []net.IP) []net.IP {
	first := func(v4 bool, from int) {
		for i := from; i < len(ips); i++ {
			if (ips[i].To4() != nil) == v4 {
				ip := ips[i]
				copy(ips[from+1:i+1], ips[from:i])
				ips[from] = ip
				return
			}
		}
	}
	if len(ips) < 2 {
		return ips
	}
	first(true, 0)
	if ips[0].To4() != nil {
		first(false, 1)
	}
	return ips
}

// attachmentStatus returns the status of the attachment of network on ifName from its chain's
// result: the pod's IPs (see resultIPs), the MAC address of the sandbox interface named ifName
// (or, if none is, of the first sandbox interface) and the DNS settings.
func attachmentStatus(res types.Result, network, ifName string) (AttachmentStatus, error) {
	ips, err := resultIPs(res)
	if err != nil {
		return AttachmentStatus{}, err
	}
	as := AttachmentStatus{Network: network, IfName: ifName, IPs: ips}
	if res == nil {
		return as, nil
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return AttachmentStatus{}, fmt.Errorf("result version %q: %w", res.Version(), err)
	}
	for _, intf := range cur.Interfaces {
		if intf == nil || intf.Sandbox == "" {
			continue
		}
		if intf.Name == ifName {
			as.MAC = intf.Mac
			break
		}
		if as.MAC == "" {
			as.MAC = intf.Mac
		}
	}
	if !cur.DNS.IsEmpty() {
		dns := cur.DNS.Copy()
		as.DNS = dns
	}
	return as, nil
}
