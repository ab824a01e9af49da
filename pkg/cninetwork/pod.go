package cninetwork

import (
	"encoding/json"
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
	// ExtraNetworks are networks the pod is attached to besides the default, by name.
	ExtraNetworks []NetworkAttachment

	// networksErr is why PodFromSandboxConfig could not read the pod's NetworksAnnotation;
	// Validate and SetUpPod refuse the pod for it.
	networksErr error
}

// NetworkAttachment asks for a pod to be attached to a network other than the default.
//
// The values a pod asks of the attachment reach the network's plugins as capability args
// ("ips", "mac", "portMappings", "bandwidth"), each only where the network declares the
// capability, as the CNI conventions say; they replace, on this network, the pod's own port
// mappings and bandwidth annotations, which are for the default network alone.
type NetworkAttachment struct {
	// Network is the name of a valid network in the configuration directory.
	Network string
	// IfName is the interface name inside the pod; empty means the next free ethN.
	IfName string
	// IPs are addresses (an IP, or an IP with a prefix length) asked for on the network.
	IPs []string
	// MAC is the MAC address asked for on the network.
	MAC string
	// PortMappings are host ports to forward to the pod on this network.
	PortMappings []SelectionPortMapping
	// Bandwidth limits the pod's traffic on this network.
	Bandwidth *SelectionBandwidth
	// CNIArgs, a JSON object, is passed to each of the network's plugins as "args":
	// {"cni": CNIArgs} in its configuration.
	CNIArgs json.RawMessage
	// DefaultRoute asks for the pod's default route through this network: gateway IPs, at
	// most one per IP family across all the pod's networks. Once every attachment succeeded,
	// SetUpPod replaces, in the pod's netns, the default routes of each family named (main
	// table) with one via the gateway on this network's interface; if that fails, the pod is
	// rolled back like any failed set-up. The attachment is then its status's Default one.
	DefaultRoute []string
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
// ExtraNetworksFromSelection). An annotation that does not parse, or that names a namespace the
// pod may not use, leaves ExtraNetworks empty and makes Validate, CheckNetworks and SetUpPod
// refuse the pod with ErrInvalidPod, so that it is never set up without the networks it asked
// for. The returned Pod shares cfg's slices, map and DNS config; the caller must
// not modify them while the Pod is in use. cfg may be nil (only the sandbox ID and netns path
// are set then).
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
		sels, err := ParseNetworkSelection(v)
		if err == nil {
			pod.ExtraNetworks, err = ExtraNetworksFromSelection(pod.Namespace, sels)
		}
		pod.networksErr = err
	}
	return pod
}

// ExtraNetworksFromSelection turns the network selection of a pod in podNamespace into its
// extra networks. A selection's namespace must be empty, podNamespace or "default": networks are
// the node's, selected by name (see NetworkSelection).
func ExtraNetworksFromSelection(podNamespace string, sels []NetworkSelection) ([]NetworkAttachment, error) {
	var out []NetworkAttachment
	for i, s := range sels {
		if !namespaceAllowed(s.Namespace, podNamespace) {
			return nil, fmt.Errorf("network selection element %d (network %q): namespace %q: only the pod's own namespace or %q may name this node's networks",
				i, s.Name, s.Namespace, "default")
		}
		out = append(out, NetworkAttachment{Network: s.Name, IfName: s.Interface, IPs: s.IPs, MAC: s.MAC,
			PortMappings: s.PortMappings, Bandwidth: s.Bandwidth, CNIArgs: s.CNIArgs, DefaultRoute: s.DefaultRoute})
	}
	return out, nil
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
