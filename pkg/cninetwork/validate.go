package cninetwork

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/pkg/utils"
)

// Validate checks everything about the pod that SetUpPod would refuse before running a plugin
// and that does not depend on the node: the sandbox ID, the CNI_ARGS fields, port mappings,
// bandwidth annotations, DNS and the extra networks (all but whether they exist and how many
// a node allows: see Plugin.ValidatePod). Errors wrap ErrInvalidPod and name the pod and the
// field.
func (pod *Pod) Validate() error {
	if err := checkSandboxID(pod); err != nil {
		return err
	}
	if _, err := preparePod(pod, nil); err != nil {
		return err
	}
	_, err := pod.extraNetworks()
	return err
}

// ValidatePod checks everything SetUpPod would refuse before running a plugin, against the
// current configuration: what Validate checks, that each extra network is a valid network of
// the configuration directory, and that the pod asks for no more networks than
// WithMaxPodNetworks allows. A runtime calls it before it creates anything for the pod.
// Errors wrap ErrInvalidPod (or ErrNotReady, when no default network is ready) and name the
// pod and what is wrong.
func (p *Plugin) ValidatePod(pod *Pod) error {
	if err := pod.Validate(); err != nil {
		return err
	}
	_, err := p.podNetworks(p.source.Snapshot(), pod)
	return err
}

// podNetworks returns the pod's extra networks checked against snap and the Plugin's cap, and
// normalized (see extraNetworks). It is the one check of a pod's networks: ValidatePod and
// SetUpPod's plan both go through it.
func (p *Plugin) podNetworks(snap *confwatch.Snapshot, pod *Pod) ([]NetworkSelection, error) {
	if snap == nil || snap.Default == nil {
		why := errors.New("CNI configuration not loaded yet")
		if snap != nil && snap.Err != nil {
			why = snap.Err
		}
		return nil, fmt.Errorf("%s: %w: %w", pod, ErrNotReady, why)
	}
	if n, most := 1+len(pod.ExtraNetworks), p.opts.maxPodNetworks; n > most {
		return nil, fmt.Errorf("%w: %s: asks for %d networks, the default one included; this node allows at most %d per pod",
			ErrInvalidPod, pod, n, most)
	}
	extra, err := pod.extraNetworks()
	if err != nil {
		return nil, err
	}
	for _, x := range extra {
		if snap.Network(x.Name) == nil {
			return nil, fmt.Errorf("%w: %s: extra network %q: no valid configuration in %s", ErrInvalidPod, pod, x.Name, snap.Dir)
		}
	}
	return extra, nil
}

// extraNetworks checks what can be checked of the pod's extra networks without the
// configuration, and returns them normalized (protocols in lower case, cni-args compacted, as
// Normalize leaves them) without changing pod: each selection as
// Normalize checks it, its namespace one the pod may use (see NetworkSelection),
// interfaces not eth0 or lo and not used twice, at most one default-route gateway per IP
// family across the pod. Errors wrap ErrInvalidPod and name the network.
func (pod *Pod) extraNetworks() ([]NetworkSelection, error) {
	if len(pod.ExtraNetworks) == 0 {
		return nil, nil
	}
	out := make([]NetworkSelection, len(pod.ExtraNetworks))
	used := map[string]bool{defaultIfName: true, "lo": true}
	gateways := map[bool]string{} // the network asking for the default route, by "is IPv4"
	for i, x := range pod.ExtraNetworks {
		if x.Name == "" {
			return nil, fmt.Errorf("%w: %s: extra network %d: no network name", ErrInvalidPod, pod, i)
		}
		sel := x
		sel.PortMappings = slices.Clone(x.PortMappings) // Normalize changes them in place
		if err := sel.Normalize(); err != nil {
			return nil, fmt.Errorf("%w: %s: extra network %q: %w", ErrInvalidPod, pod, x.Name, err)
		}
		if !namespaceAllowed(sel.Namespace, pod.Namespace) {
			return nil, fmt.Errorf("%w: %s: extra network %q: namespace %q: only the pod's own namespace or %q may name this node's networks",
				ErrInvalidPod, pod, x.Name, sel.Namespace, "default")
		}
		for _, gw := range sel.DefaultRoute {
			v4 := net.ParseIP(gw).To4() != nil
			if other, ok := gateways[v4]; ok {
				return nil, fmt.Errorf("%w: %s: extra network %q: default-route %s: the %s default route is already asked of network %q",
					ErrInvalidPod, pod, x.Name, gw, family(v4), other)
			}
			gateways[v4] = x.Name
		}
		if sel.Interface != "" {
			if used[sel.Interface] {
				return nil, fmt.Errorf("%w: %s: extra network %q: interface %q is already used by another network of the pod",
					ErrInvalidPod, pod, x.Name, sel.Interface)
			}
			used[sel.Interface] = true
		}
		out[i] = sel
	}
	return out, nil
}

// dnsLabel matches an RFC 1123 label, as Kubernetes namespaces are.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Normalize checks sel as SetUpPod would, all but whether its network exists and what other
// networks the pod asks for, and normalizes it: protocols in lower case ("tcp" for none),
// cni-args compacted (a JSON null taken for none), empty lists made nil. Names and interfaces
// must be valid CNI names, namespaces DNS labels, addresses, MACs, gateways, ports and
// protocols well-formed, rates not negative, cni-args a JSON object. The error says what is
// wrong.
func (sel *NetworkSelection) Normalize() error {
	if sel.Name == "" {
		return errors.New("no network name")
	}
	// An empty list asks for nothing, as an absent one does.
	if len(sel.IPs) == 0 {
		sel.IPs = nil
	}
	if len(sel.DefaultRoute) == 0 {
		sel.DefaultRoute = nil
	}
	if len(sel.PortMappings) == 0 {
		sel.PortMappings = nil
	}
	if e := utils.ValidateNetworkName(sel.Name); e != nil {
		return fmt.Errorf("network name %q: %s", sel.Name, e.Msg)
	}
	if sel.Namespace != "" {
		if !dnsLabel.MatchString(sel.Namespace) {
			return fmt.Errorf("namespace %q: not a DNS label (at most 63 characters: lower-case letters, digits and '-', starting and ending with a letter or digit)",
				sel.Namespace)
		}
	}
	if sel.Interface != "" {
		if e := utils.ValidateInterfaceName(sel.Interface); e != nil {
			return fmt.Errorf("interface %q: %s", sel.Interface, e.Msg)
		}
		if !utf8.ValidString(sel.Interface) || strings.IndexFunc(sel.Interface, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("interface %q: not printable UTF-8", sel.Interface)
		}
	}
	for _, ip := range sel.IPs {
		if net.ParseIP(ip) == nil {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return fmt.Errorf("ips: %q is not an IP address", ip)
			}
		}
	}
	if sel.MAC != "" {
		hw, err := net.ParseMAC(sel.MAC)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("mac: %q is not a 48-bit MAC address", sel.MAC)
		}
	}
	for _, gw := range sel.DefaultRoute {
		if net.ParseIP(gw) == nil {
			return fmt.Errorf("default-route: %q is not an IP address", gw)
		}
	}
	for i := range sel.PortMappings {
		pm, err := checkPortMapping(i, sel.PortMappings[i])
		if err != nil {
			return err
		}
		sel.PortMappings[i] = pm
	}
	if bw := sel.Bandwidth; bw != nil {
		if bw.IngressRate < 0 || bw.IngressBurst < 0 || bw.EgressRate < 0 || bw.EgressBurst < 0 {
			return errors.New("bandwidth: rates and bursts must not be negative")
		}
	}
	if string(bytes.TrimSpace(sel.CNIArgs)) == "null" {
		// As written by selection types whose cni-args has no omitempty (multus's).
		sel.CNIArgs = nil
	}
	if sel.CNIArgs != nil {
		if b := bytes.TrimSpace(sel.CNIArgs); len(b) == 0 || b[0] != '{' {
			return errors.New("cni-args: not a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, sel.CNIArgs); err != nil {
			return fmt.Errorf("cni-args: %w", err)
		}
		sel.CNIArgs = buf.Bytes()
	}
	return nil
}

// namespaceAllowed reports whether a selection's namespace may name a network of this node
// for a pod in podNamespace (see NetworkSelection).
func namespaceAllowed(ns, podNamespace string) bool {
	return ns == "" || ns == podNamespace || ns == "default"
}

// family names an IP family.
func family(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

// checkSandboxID checks that pod is set and its sandbox ID is one libcni accepts (it names
// cache files). Errors wrap ErrInvalidPod.
func checkSandboxID(pod *Pod) error {
	if pod == nil {
		return fmt.Errorf("%w: nil pod", ErrInvalidPod)
	}
	if pod.SandboxID == "" {
		return fmt.Errorf("%w: %s: sandbox ID is empty", ErrInvalidPod, pod)
	}
	if e := utils.ValidateContainerID(pod.SandboxID); e != nil {
		return fmt.Errorf("%w: %s: sandbox ID %q: %s", ErrInvalidPod, pod, pod.SandboxID, e.Msg)
	}
	return nil
}

// checkPortMapping checks a port mapping with a host port and returns it with its protocol in
// lower case, "tcp" for none.
func checkPortMapping(i int, pm PortMapping) (PortMapping, error) {
	if pm.HostPort < 1 || pm.HostPort > math.MaxUint16 {
		return pm, fmt.Errorf("port mapping %d: host port %d out of range 1-65535", i, pm.HostPort)
	}
	if pm.ContainerPort < 1 || pm.ContainerPort > math.MaxUint16 {
		return pm, fmt.Errorf("port mapping %d: container port %d out of range 1-65535", i, pm.ContainerPort)
	}
	switch p := strings.ToLower(pm.Protocol); p {
	case "":
		pm.Protocol = "tcp"
	case "tcp", "udp", "sctp":
		pm.Protocol = p
	default:
		return pm, fmt.Errorf("port mapping %d: protocol %q is not tcp, udp or sctp", i, pm.Protocol)
	}
	if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
		return pm, fmt.Errorf("port mapping %d: host IP %q is not an IP address", i, pm.HostIP)
	}
	return pm, nil
}
