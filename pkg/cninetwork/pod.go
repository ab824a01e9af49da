package cninetwork

import (
	"encoding/json"
	"fmt"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
)

// Pod describes a pod sandbox's network as a runtime knows it. A CRI runtime builds it from the
// sandbox's configuration with the cri adapter (package pkg/adapter/cri); other runtimes fill
// it from their own types.
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
	PortMappings []PortMapping
	// DNS is the sandbox's DNS configuration, passed as the dns capability arg.
	DNS *DNS
	// CgroupParent is the sandbox's cgroup parent, passed as the cgroupPath capability arg.
	CgroupParent string
	// ExtraNetworks are the networks the pod is attached to besides the default, by name, in
	// the form of the networks annotation's elements, however they arrive. What a pod may ask
	// of them, and how it reaches the plugins, is said at NetworkSelection; Validate checks
	// them, and the Plugin's ValidatePod also that each exists and that the pod asks for no
	// more networks than WithMaxPodNetworks allows.
	ExtraNetworks []NetworkSelection
}

// NetworkSelection is a network to attach a pod to besides the default one, and what the pod
// asks of that attachment: one element of the Network Plumbing Working Group's networks
// annotation (k8s.v1.cni.cncf.io/networks), whose JSON form it has. It is the one form of a
// pod's extra networks (Pod.ExtraNetworks), whether they come from the annotation (package
// npwg reads it) or from a runtime's own API.
//
// The values a pod asks of the attachment reach the network's plugins as capability args
// ("ips", "mac", "portMappings", "bandwidth"), each only where the network declares the
// capability, as the CNI conventions say; they replace, on this network, the pod's own port
// mappings and bandwidth annotations, which are for the default network alone.
//
// Networks are the CNI configuration lists of the configuration directory, selected by their
// name: there is no API server and no NetworkAttachmentDefinition. They are node-wide, so the
// namespace part of a selection may only be empty, the pod's own namespace or "default" (the
// namespace the specification's implementations keep cluster-wide networks in); any other
// namespace names a network this node does not know and is refused, rather than silently
// attaching the pod to a node network of the same name (see Normalize and Pod.Validate).
type NetworkSelection struct {
	// Name is the network's name (required).
	Name string `json:"name"`
	// Namespace is the namespace of the network; see the type's documentation.
	Namespace string `json:"namespace,omitempty"`
	// Interface is the pod's interface on the network; empty means the next free ethN.
	Interface string `json:"interface,omitempty"`
	// IPs are addresses, each an IP or an IP with a prefix length, that the pod asks for on
	// the network (the "ips" capability).
	IPs []string `json:"ips,omitempty"`
	// MAC is the MAC address the pod asks for on the network (the "mac" capability).
	MAC string `json:"mac,omitempty"`
	// DefaultRoute holds gateway IPs, at most one per IP family across all the pod's
	// networks, to route the pod's default traffic through this network. Once every
	// attachment succeeded, SetUpPod replaces, in the pod's netns, the default routes of each
	// family named (main table) with one via the gateway on this network's interface; if that
	// fails, the pod is rolled back like any failed set-up. The attachment is then its
	// status's Default one.
	DefaultRoute []string `json:"default-route,omitempty"`
	// PortMappings are host ports to forward to the pod on this network (the "portMappings"
	// capability).
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	// Bandwidth limits the pod's traffic on this network (the "bandwidth" capability).
	Bandwidth *Bandwidth `json:"bandwidth,omitempty"`
	// CNIArgs is a JSON object passed to the network's plugins as "args": {"cni": ...} in
	// their configuration. The parser takes a JSON null for none.
	CNIArgs json.RawMessage `json:"cni-args,omitempty"`
}

// PortMapping is a host port forwarded to a port of the pod, as the portMappings capability
// arg carries it (CNI conventions), which is its JSON form.
type PortMapping struct {
	// HostPort is the port on the host, 1-65535. In Pod.PortMappings, 0 means the port is not
	// published on the host, and the mapping is skipped, as the kubelet does.
	HostPort int32 `json:"hostPort"`
	// ContainerPort is the port in the pod, 1-65535.
	ContainerPort int32 `json:"containerPort"`
	// Protocol is "tcp", "udp" or "sctp", in any case; empty means "tcp".
	Protocol string `json:"protocol,omitempty"`
	// HostIP is the host address to listen on; empty means every address.
	HostIP string `json:"hostIP,omitempty"`
}

// Bandwidth limits a pod's traffic, as the bandwidth capability arg carries it (CNI
// conventions), which is its JSON form: rates in bits per second, bursts in bits; 0 means no
// limit.
type Bandwidth struct {
	IngressRate  int64 `json:"ingressRate,omitempty"`
	IngressBurst int64 `json:"ingressBurst,omitempty"`
	EgressRate   int64 `json:"egressRate,omitempty"`
	EgressBurst  int64 `json:"egressBurst,omitempty"`
}

// DNS is the pod's DNS configuration, as the dns capability arg carries it (CNI conventions),
// which is its JSON form.
type DNS struct {
	// Servers are the name servers' addresses.
	Servers []string `json:"servers,omitempty"`
	// Searches are the search domains.
	Searches []string `json:"searches,omitempty"`
	// Options are resolver options, such as "ndots:5".
	Options []string `json:"options,omitempty"`
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
