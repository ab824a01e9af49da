// Package cri adapts the core (pkg/cninetwork) to the CRI's types: a pod sandbox's
// configuration becomes a cninetwork.Pod, a pod's network status the CRI's
// PodSandboxNetworkStatus. A CRI runtime that embeds cninetwork calls it at RunPodSandbox and
// PodSandboxStatus; the core itself knows nothing of the CRI.
package cri

import (
	"fmt"
	"strings"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/npwg"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodFromSandboxConfig builds the Pod of a sandbox from its CRI configuration: name,
// namespace and UID from the metadata, annotations, port mappings, DNS configuration, the
// Linux cgroup parent, and the extra networks of the networks annotation (see npwg.Parse). cfg
// may be nil (only the sandbox ID and netns path are set then).
//
// An annotation that does not parse, a port mapping whose protocol the CRI does not define, or
// a pod that Pod.Validate refuses is an error wrapping cninetwork.ErrInvalidPod, naming the pod
// and what is wrong; the Pod is returned all the same (without the extra networks when the
// annotation does not parse), so that a runtime can still tear down a sandbox by it. The Pod shares cfg's annotations map; the caller must not modify it while
// the Pod is in use.
func PodFromSandboxConfig(sandboxID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) (*cninetwork.Pod, error) {
	pod := &cninetwork.Pod{SandboxID: sandboxID, NetNS: netnsPath}
	if cfg == nil {
		return pod, nil
	}
	if md := cfg.GetMetadata(); md != nil {
		pod.Name, pod.Namespace, pod.UID = md.GetName(), md.GetNamespace(), md.GetUid()
	}
	pod.Annotations = cfg.GetAnnotations()
	pod.CgroupParent = cfg.GetLinux().GetCgroupParent()
	if d := cfg.GetDnsConfig(); d != nil {
		pod.DNS = &cninetwork.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	var errs []string
	for i, pm := range cfg.GetPortMappings() {
		if pm == nil {
			continue
		}
		proto, ok := protocols[pm.GetProtocol()]
		if !ok {
			errs = append(errs, fmt.Sprintf("port mapping %d: unknown protocol %d (want TCP, UDP or SCTP)", i, int32(pm.GetProtocol())))
			continue
		}
		pod.PortMappings = append(pod.PortMappings, cninetwork.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(), Protocol: proto, HostIP: pm.GetHostIp(),
		})
	}
	if v, ok := pod.Annotations[npwg.NetworksAnnotation]; ok {
		sels, err := npwg.Parse(v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("annotation %s: %v", npwg.NetworksAnnotation, err))
		} else {
			pod.ExtraNetworks = sels
		}
	}
	if len(errs) > 0 {
		return pod, fmt.Errorf("%w: %s: %s", cninetwork.ErrInvalidPod, pod, strings.Join(errs, "; "))
	}
	if cfg.GetMetadata() == nil {
		return pod, nil // a sandbox without metadata is the runtime's to refuse
	}
	return pod, pod.Validate()
}

// protocols names the CRI's protocols as port mappings name them.
var protocols = map[runtimeapi.Protocol]string{
	runtimeapi.Protocol_TCP:  "tcp",
	runtimeapi.Protocol_UDP:  "udp",
	runtimeapi.Protocol_SCTP: "sctp",
}

// NetworkStatus converts a pod's network status into the CRI's form: the primary IP and the
// additional IPs of the pod's default network. It returns nil for a nil status or one without
// IPs.
func NetworkStatus(s *cninetwork.PodNetworkStatus) *runtimeapi.PodSandboxNetworkStatus {
	if s == nil || len(s.IPs) == 0 {
		return nil
	}
	out := &runtimeapi.PodSandboxNetworkStatus{Ip: s.IPs[0].String()}
	for _, ip := range s.IPs[1:] {
		out.AdditionalIps = append(out.AdditionalIps, &runtimeapi.PodIP{Ip: ip.String()})
	}
	return out
}
