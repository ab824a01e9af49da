package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	cnilibrary "github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/cnishim/cnishim/pkg/npwg"
)

// Capability and label names the conversion to a cninetwork.Pod reads: the CRI's (as
// containerd passes them) and the kubelet's CNI_ARGS.
const (
	capPortMappings   = "portMappings"
	capBandwidth      = "bandwidth"
	capDNS            = "dns"
	capCgroupPath     = "cgroupPath"
	capPodAnnotations = "io.kubernetes.cri.pod-annotations"

	argPodNamespace = "K8S_POD_NAMESPACE"
	argPodName      = "K8S_POD_NAME"
	argPodUID       = "K8S_POD_UID"

	annotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	annotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// NamespaceOpts sets the arguments of one pod's set-up or teardown.
type NamespaceOpts func(s *Namespace) error

// Namespace is one pod sandbox's network namespace and the arguments its plugins get.
type Namespace struct {
	id             string
	path           string
	capabilityArgs map[string]interface{}
	args           map[string]string
}

func newNamespace(id, path string, opts ...NamespaceOpts) (*Namespace, error) {
	ns := &Namespace{
		id:             id,
		path:           path,
		capabilityArgs: make(map[string]interface{}),
		args:           make(map[string]string),
	}
	for _, o := range opts {
		if err := o(ns); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

func (ns *Namespace) config(ifName string) *cnilibrary.RuntimeConf {
	c := &cnilibrary.RuntimeConf{
		ContainerID: ns.id,
		NetNS:       ns.path,
		IfName:      ifName,
	}
	for k, v := range ns.args {
		c.Args = append(c.Args, [2]string{k, v})
	}
	c.CapabilityArgs = ns.capabilityArgs
	return c
}

// WithCapabilityPortMap adds support for port mappings
func WithCapabilityPortMap(portMapping []PortMapping) NamespaceOpts {
	return WithCapability(capPortMappings, portMapping)
}

// WithCapabilityIPRanges adds support for ip ranges. The Plugin passes the node's ranges
// (cninetwork.Plugin.SetPodCIDRs) as ipRanges, not a pod's own; a pod's are not used.
func WithCapabilityIPRanges(ipRanges []IPRanges) NamespaceOpts {
	return WithCapability("ipRanges", ipRanges)
}

// WithCapabilityBandWidth adds support for bandwidth limits. The pod's bandwidth annotations,
// which containerd passes too, take precedence; the bursts are the Plugin's.
func WithCapabilityBandWidth(bandWidth BandWidth) NamespaceOpts {
	return WithCapability(capBandwidth, bandWidth)
}

// WithCapabilityDNS adds support for dns
func WithCapabilityDNS(dns DNS) NamespaceOpts {
	return WithCapability(capDNS, dns)
}

// WithCapabilityCgroupPath passes in the cgroup path capability.
func WithCapabilityCgroupPath(cgroupPath string) NamespaceOpts {
	return WithCapability(capCgroupPath, cgroupPath)
}

// WithCapability sets a capability arg. The Plugin passes the capabilities it knows
// (portMappings, bandwidth, dns, cgroupPath, the pod annotations) to the plugins that declare
// them; others are not passed.
func WithCapability(name string, capability interface{}) NamespaceOpts {
	return func(c *Namespace) error {
		c.capabilityArgs[name] = capability
		return nil
	}
}

// WithLabels sets CNI_ARGS. The Plugin passes the pod's identity (K8S_POD_NAMESPACE,
// K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID) and IgnoreUnknown; other keys are
// not passed.
func WithLabels(labels map[string]string) NamespaceOpts {
	return func(c *Namespace) error {
		for k, v := range labels {
			c.args[k] = v
		}
		return nil
	}
}

// WithArgs sets one CNI_ARGS key (see WithLabels).
func WithArgs(k, v string) NamespaceOpts {
	return func(c *Namespace) error {
		c.args[k] = v
		return nil
	}
}

// pod converts the namespace's arguments into the Plugin's pod, on nets (the default network
// first): the extra networks are nets[1:], on prefix1 and on, then those the pod's networks
// annotation selects.
func (ns *Namespace) pod(prefix string, nets []*confwatch.Network) (*cninetwork.Pod, error) {
	pod := &cninetwork.Pod{
		SandboxID: ns.id,
		NetNS:     ns.path,
		Namespace: ns.args[argPodNamespace],
		Name:      ns.args[argPodName],
		UID:       ns.args[argPodUID],
	}
	if err := ns.capability(capPodAnnotations, &pod.Annotations); err != nil {
		return nil, err
	}
	if err := ns.capability(capPortMappings, &pod.PortMappings); err != nil {
		return nil, err
	}
	if _, ok := ns.capabilityArgs[capDNS]; ok {
		pod.DNS = &cninetwork.DNS{}
		if err := ns.capability(capDNS, pod.DNS); err != nil {
			return nil, err
		}
	}
	if err := ns.capability(capCgroupPath, &pod.CgroupParent); err != nil {
		return nil, err
	}
	var bw BandWidth
	if err := ns.capability(capBandwidth, &bw); err != nil {
		return nil, err
	}
	pod.Annotations = withBandwidth(pod.Annotations, bw)
	for i, n := range nets {
		if i > 0 {
			pod.ExtraNetworks = append(pod.ExtraNetworks, cninetwork.NetworkSelection{Name: n.Name, Interface: getIfName(prefix, i)})
		}
	}
	if v, ok := pod.Annotations[npwg.NetworksAnnotation]; ok {
		sels, err := npwg.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("pod sandbox %s: annotation %s: %w: %w", ns.id, npwg.NetworksAnnotation, err, cninetwork.ErrInvalidPod)
		}
		pod.ExtraNetworks = append(pod.ExtraNetworks, sels...)
	}
	return pod, nil
}

// capability decodes the capability arg name into v, through JSON, so that go-cni's types and
// a caller's own both convert (JSON field names match without regard to case). A missing arg
// leaves v alone.
func (ns *Namespace) capability(name string, v any) error {
	arg, ok := ns.capabilityArgs[name]
	if !ok || arg == nil {
		return nil
	}
	b, err := json.Marshal(arg)
	if err != nil {
		return fmt.Errorf("pod sandbox %s: capability %s: %w: %w", ns.id, name, err, cninetwork.ErrInvalidPod)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("pod sandbox %s: capability %s: %w: %w", ns.id, name, err, cninetwork.ErrInvalidPod)
	}
	return nil
}

// withBandwidth returns annotations with the bandwidth capability's rates as the kubelet's
// bandwidth annotations, where the pod has none of its own, which is how the Plugin reads a
// pod's bandwidth.
func withBandwidth(annotations map[string]string, bw BandWidth) map[string]string {
	set := func(key string, rate uint64) {
		if rate == 0 || annotations[key] != "" {
			return
		}
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[key] = strconv.FormatUint(rate, 10)
	}
	if bw.IngressRate > 0 || bw.EgressRate > 0 {
		annotations = cloneMap(annotations)
		set(annotationIngressBandwidth, bw.IngressRate)
		set(annotationEgressBandwidth, bw.EgressRate)
	}
	return annotations
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Network is one network configuration and the pod interface it gets, as go-cni's Networks
// returns them. Its methods run libcni directly, outside the Plugin's records and bounds: they
// are go-cni's escape hatch, kept for callers that use it.
type Network struct {
	cni    cnilibrary.CNI
	config *cnilibrary.NetworkConfigList
	ifName string
}

// Attach runs the network's ADD for ns.
func (n *Network) Attach(ctx context.Context, ns *Namespace) (*types100.Result, error) {
	r, err := n.cni.AddNetworkList(ctx, n.config, ns.config(n.ifName))
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(r)
}

// Remove runs the network's DEL for ns.
func (n *Network) Remove(ctx context.Context, ns *Namespace) error {
	return n.cni.DelNetworkList(ctx, n.config, ns.config(n.ifName))
}

// Check runs the network's CHECK for ns.
func (n *Network) Check(ctx context.Context, ns *Namespace) error {
	return n.cni.CheckNetworkList(ctx, n.config, ns.config(n.ifName))
}
