package cninetwork

import (
	"fmt"
	"net"

	"github.com/cnishim/cnishim/internal/cniargs"
	"github.com/containernetworking/cni/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod describes a pod sandbox's network as a CRI runtime knows it. Fill it straight from CRI
// types, or build it with PodFromSandboxConfig.
type Pod struct {
	// SandboxID is the pod sandbox's ID; it is the CNI container ID.
	SandboxID string
	// Name, Namespace and UID identify the pod in Kubernetes.
	Name, Namespace, UID string
	// NetNS is the path of the sandbox's network namespace. It may be empty or gone at
	// teardown.
	NetNS string
	// Annotations are the pod's annotations (bandwidth is read from them).
	Annotations map[string]string
	// PortMappings are the sandbox's port mappings; those with a host port become portMappings
	// capability args.
	PortMappings []*runtimeapi.PortMapping
	// DNS is the sandbox's DNS configuration, passed as the dns capability arg.
	DNS *runtimeapi.DNSConfig
	// CgroupParent is the sandbox's cgroup parent, passed as the cgroupPath capability arg.
	CgroupParent string
	// ExtraNetworks are the networks the pod is attached to besides the default, by name, in
	// the form of the NetworksAnnotation's elements, however they arrive. What a pod may ask
	// of them, and how it reaches the plugins, is said at NetworkSelection; Validate checks
	// them, and the Plugin's ValidatePod also that each exists and that the pod asks for no
	// more networks than WithMaxPodNetworks allows.
	ExtraNetworks []NetworkSelection

	// networksErr is why PodFromSandboxConfig could not parse the pod's NetworksAnnotation;
	// Validate and SetUpPod refuse the pod for it.
	networksErr error
}

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

// CRI converts the status into the CRI's form: the primary IP and the additional IPs. It
// returns nil for a nil status or one without IPs.
func (s *PodNetworkStatus) CRI() *runtimeapi.PodSandboxNetworkStatus {
	if s == nil || len(s.IPs) == 0 {
		return nil
	}
	out := &runtimeapi.PodSandboxNetworkStatus{Ip: s.IPs[0].String()}
	for _, ip := range s.IPs[1:] {
		out.AdditionalIps = append(out.AdditionalIps, &runtimeapi.PodIP{Ip: ip.String()})
	}
	return out
}

// PodFromSandboxConfig builds the Pod of a sandbox from its CRI configuration: name,
// namespace and UID from the metadata, annotations, port mappings, DNS configuration, the
// Linux cgroup parent, and the extra networks of the NetworksAnnotation (see
// ParseNetworkSelection). An annotation that does not parse leaves ExtraNetworks empty and
// makes Validate, ValidatePod and SetUpPod refuse the pod with ErrInvalidPod, so that it is
// never set up without the networks it asked for. The returned Pod shares cfg's slices, map
// and DNS config; the caller must not modify them while the Pod is in use. cfg may be nil
// (only the sandbox ID and netns path are set then).
func PodFromSandboxConfig(sandboxID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) *Pod {
	pod := &Pod{SandboxID: sandboxID, NetNS: netnsPath}
	if cfg == nil {
		return pod
	}
	if md := cfg.GetMetadata(); md != nil {
		pod.Name, pod.Namespace, pod.UID = md.GetName(), md.GetNamespace(), md.GetUid()
	}
	pod.Annotations = cfg.GetAnnotations()
	pod.PortMappings = cfg.GetPortMappings()
	pod.DNS = cfg.GetDnsConfig()
	pod.CgroupParent = cfg.GetLinux().GetCgroupParent()
	if v, ok := pod.Annotations[NetworksAnnotation]; ok {
		pod.ExtraNetworks, pod.networksErr = ParseNetworkSelection(v)
	}
	return pod
}

// ref returns the pod's "namespace/name", as klog.KObj prints it.
func (p *Pod) ref() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// GetName returns the pod's name; with GetNamespace it lets klog.KObj log a Pod.
func (p *Pod) GetName() string { return p.Name }

// GetNamespace returns the pod's namespace.
func (p *Pod) GetNamespace() string { return p.Namespace }

// String describes the pod for error messages: "pod namespace/name (sandbox ID)", with the
// name and ID quoted if they hold unprintable characters.
func (p *Pod) String() string {
	return fmt.Sprintf("pod %s (sandbox %s)", cniargs.QuoteUnprintable(p.ref()), cniargs.QuoteUnprintable(p.SandboxID))
}
