package cninetwork

import (
	"fmt"
	"math"
	"net"
	"strings"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"github.com/containernetworking/cni/libcni"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Capability names a network's plugins declare to receive runtime values (CNI conventions).
const (
	capPortMappings   = "portMappings"
	capBandwidth      = "bandwidth"
	capIPRanges       = "ipRanges"
	capDNS            = "dns"
	capPodAnnotations = "io.kubernetes.cri.pod-annotations"
	capCgroupPath     = "cgroupPath"
	capIPs            = "ips"
	capMAC            = "mac"
)

// Pod annotations that limit the pod's bandwidth, in bits per second.
const (
	annotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	annotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// defaultIfName is the pod's interface on its default network.
const defaultIfName = "eth0"

// Bounds the kubelet puts on a bandwidth annotation.
var (
	minBandwidth = resource.MustParse("1k")
	maxBandwidth = resource.MustParse("1P")
)

// ipRange is one range of the ipRanges capability arg.
type ipRange struct {
	Subnet string `json:"subnet"`
}

// podArgs is a Pod checked and turned into what its plugins receive. It is computed once per
// operation, before any plugin runs, and not modified afterwards.
type podArgs struct {
	// cniArgs are the CNI_ARGS pairs.
	cniArgs [][2]string
	// caps holds every capability arg the pod has a value for; runtimeConf passes on only
	// those a network declares.
	caps map[string]any
}

// preparePod checks pod and computes its CNI_ARGS and capability args. podCIDRs are the
// node's pod CIDRs (the ipRanges capability). Every error wraps ErrInvalidPod and names the pod
// and the offending field.
func preparePod(pod *Pod, podCIDRs []*net.IPNet) (*podArgs, error) {
	args, err := podCNIArgs(pod)
	if err != nil {
		return nil, err
	}
	caps, err := podCaps(pod, podCIDRs)
	if err != nil {
		return nil, err
	}
	return &podArgs{cniArgs: args, caps: caps}, nil
}

// podCNIArgs checks the pod's identity and returns its CNI_ARGS.
func podCNIArgs(pod *Pod) ([][2]string, error) {
	if err := checkSandboxID(pod); err != nil {
		return nil, err
	}
	args, err := cniargs.Kubernetes(cniargs.Pod{SandboxID: pod.SandboxID, Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPod, pod, err)
	}
	return args, nil
}

// podCaps returns every capability arg pod has a value for.
func podCaps(pod *Pod, podCIDRs []*net.IPNet) (map[string]any, error) {
	caps := make(map[string]any, 6)
	ports, err := portMappings(pod.PortMappings)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPod, pod, err)
	}
	if len(ports) > 0 {
		caps[capPortMappings] = ports
	}
	bw, err := bandwidth(pod.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPod, pod, err)
	}
	if bw != nil {
		caps[capBandwidth] = bw
	}
	if ranges := ipRanges(podCIDRs); ranges != nil {
		caps[capIPRanges] = ranges
	}
	if pod.DNS != nil {
		caps[capDNS] = *pod.DNS
	}
	if len(pod.Annotations) > 0 {
		caps[capPodAnnotations] = pod.Annotations
	}
	if pod.CgroupParent != "" {
		caps[capCgroupPath] = pod.CgroupParent
	}
	return caps, nil
}

// runtimeConf returns the RuntimeConf for attaching the pod to a network whose plugins declare
// the capabilities declared, on interface ifName inside netns. Only declared capabilities are
// passed. It is pure: the result shares nothing mutable with pa beyond capability values, which
// nobody modifies.
func runtimeConf(sandboxID string, pa *podArgs, declared []string, ifName, netns string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: sandboxID,
		NetNS:       netns,
		IfName:      ifName,
		Args:        pa.cniArgs,
	}
	for _, c := range declared {
		if v, ok := pa.caps[c]; ok {
			if rt.CapabilityArgs == nil {
				rt.CapabilityArgs = make(map[string]any, len(declared))
			}
			rt.CapabilityArgs[c] = v
		}
	}
	return rt
}

// portMappings returns the pod's port mappings with a host port as portMappings capability
// entries, protocols in lower case, checking ports, protocols and host IPs.
func portMappings(pms []PortMapping) ([]PortMapping, error) {
	var out []PortMapping
	for i, pm := range pms {
		if pm.HostPort < 0 || pm.HostPort > math.MaxUint16 {
			return nil, fmt.Errorf("port mapping %d: host port %d out of range 1-65535", i, pm.HostPort)
		}
		if pm.HostPort == 0 {
			continue // not published on the host; nothing for portmap to do
		}
		pm, err := checkPortMapping(i, pm)
		if err != nil {
			return nil, err
		}
		out = append(out, pm)
	}
	return out, nil
}

// bandwidth reads the bandwidth annotations with Kubernetes quantity rules, as the kubelet
// does: a rate must lie between 1k and 1P bits per second, and the burst is left unlimited
// (math.MaxInt32 bits, which the bandwidth plugin treats as no limit in practice). It returns
// nil when neither annotation is set.
func bandwidth(annotations map[string]string) (*Bandwidth, error) {
	ingress, err := bandwidthAnnotation(annotations, annotationIngressBandwidth)
	if err != nil {
		return nil, err
	}
	egress, err := bandwidthAnnotation(annotations, annotationEgressBandwidth)
	if err != nil {
		return nil, err
	}
	if ingress == 0 && egress == 0 {
		return nil, nil
	}
	bw := &Bandwidth{}
	if ingress > 0 {
		bw.IngressRate, bw.IngressBurst = ingress, math.MaxInt32
	}
	if egress > 0 {
		bw.EgressRate, bw.EgressBurst = egress, math.MaxInt32
	}
	return bw, nil
}

// bandwidthAnnotation returns the annotation's rate in bits per second, or 0 if it is unset.
func bandwidthAnnotation(annotations map[string]string, key string) (int64, error) {
	s, ok := annotations[key]
	if !ok {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("annotation %s=%q: %w", key, s, err)
	}
	if q.Cmp(minBandwidth) < 0 {
		return 0, fmt.Errorf("annotation %s=%q: below the minimum of 1k bits per second", key, s)
	}
	if q.Cmp(maxBandwidth) > 0 {
		return 0, fmt.Errorf("annotation %s=%q: above the maximum of 1P bits per second", key, s)
	}
	return q.Value(), nil
}

// ipRanges turns pod CIDRs into the ipRanges capability arg: one range set per IP family, IPv4
// first, each holding that family's CIDRs in the order given. It returns nil for no CIDRs.
func ipRanges(cidrs []*net.IPNet) [][]ipRange {
	var v4, v6 []ipRange
	for _, c := range cidrs {
		if c.IP.To4() != nil {
			v4 = append(v4, ipRange{Subnet: c.String()})
		} else {
			v6 = append(v6, ipRange{Subnet: c.String()})
		}
	}
	var out [][]ipRange
	if len(v4) > 0 {
		out = append(out, v4)
	}
	if len(v6) > 0 {
		out = append(out, v6)
	}
	return out
}

// parsePodCIDRs parses pod CIDRs as SetPodCIDRs receives them; each string may itself hold
// several CIDRs separated by commas (the kubelet's dual-stack form). Empty entries are ignored.
func parsePodCIDRs(cidrs []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range cidrs {
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			_, n, err := net.ParseCIDR(part)
			if err != nil {
				return nil, fmt.Errorf("pod CIDR %q: %w", part, err)
			}
			out = append(out, n)
		}
	}
	return out, nil
}
