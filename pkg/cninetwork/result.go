package cninetwork

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

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
