package cninetwork

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cnishim/cnishim/internal/cniargs"
	"github.com/containernetworking/cni/pkg/utils"
)

// NetworksAnnotation is the pod annotation of the Network Plumbing Working Group's
// multi-network specification (v1) that selects the networks a pod is attached to besides
// the default network.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// NetworkSelection is one network selection element of the NetworksAnnotation: a network to
// attach the pod to besides the default one, and what the pod asks of that attachment. It is
// the one form of a pod's extra networks (Pod.ExtraNetworks), whether they come from the
// annotation (ParseNetworkSelection) or from a runtime's own API. Its JSON form is the
// specification's.
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
// attaching the pod to a node network of the same name (see Pod.Validate).
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
	PortMappings []SelectionPortMapping `json:"portMappings,omitempty"`
	// Bandwidth limits the pod's traffic on this network (the "bandwidth" capability).
	Bandwidth *SelectionBandwidth `json:"bandwidth,omitempty"`
	// CNIArgs is a JSON object passed to the network's plugins as "args": {"cni": ...} in
	// their configuration. The parser takes a JSON null for none.
	CNIArgs json.RawMessage `json:"cni-args,omitempty"`
}

// SelectionPortMapping is one port mapping of a NetworkSelection.
type SelectionPortMapping struct {
	// HostPort is the port on the host, 1-65535.
	HostPort int32 `json:"hostPort"`
	// ContainerPort is the port in the pod, 1-65535.
	ContainerPort int32 `json:"containerPort"`
	// Protocol is "tcp", "udp" or "sctp" (any case; empty means tcp). The parser lowers it.
	Protocol string `json:"protocol,omitempty"`
	// HostIP is the host address to listen on; empty means every address.
	HostIP string `json:"hostIP,omitempty"`
}

// SelectionBandwidth is the bandwidth limit of a NetworkSelection: rates in bits per second,
// bursts in bits; 0 means no limit.
type SelectionBandwidth struct {
	IngressRate  int64 `json:"ingressRate,omitempty"`
	IngressBurst int64 `json:"ingressBurst,omitempty"`
	EgressRate   int64 `json:"egressRate,omitempty"`
	EgressBurst  int64 `json:"egressBurst,omitempty"`
}

// dnsLabel matches an RFC 1123 label, as Kubernetes namespaces are.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ParseNetworkSelection parses the value of the NetworksAnnotation in either of the
// specification's forms: the short form, comma-separated elements "[namespace/]name[@interface]"
// (spaces around elements are ignored), or a JSON list of network selection elements. A value
// that is empty or only spaces selects no network. Every element is checked: names and
// interfaces must be valid CNI names, namespaces DNS labels, addresses, MACs, ports and
// protocols well-formed, cni-args a JSON object; unknown JSON fields are refused rather than
// ignored. The error names the element and what is wrong with it. Protocols come back in lower
// case, an empty one as "tcp", and cni-args compacted.
func ParseNetworkSelection(annotation string) ([]NetworkSelection, error) {
	s := strings.TrimSpace(annotation)
	if s == "" {
		return nil, nil
	}
	var out []NetworkSelection
	if strings.HasPrefix(s, "[") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("network selection: JSON list: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("network selection: JSON list: data after the list")
		}
		if err := checkFieldNames(s); err != nil {
			return nil, err
		}
	} else {
		for i, e := range strings.Split(s, ",") {
			sel, err := parseShortSelection(strings.TrimSpace(e))
			if err != nil {
				return nil, fmt.Errorf("network selection element %d (%s): %w", i, cniargs.QuoteUnprintable(e), err)
			}
			out = append(out, sel)
		}
	}
	for i := range out {
		if err := out[i].check(); err != nil {
			return nil, fmt.Errorf("network selection element %d (network %q): %w", i, out[i].Name, err)
		}
	}
	return out, nil
}

// selectionFields are the JSON fields of a network selection element, as spelled.
var selectionFields = []string{"name", "namespace", "interface", "ips", "mac", "default-route", "portMappings", "bandwidth", "cni-args"}

// checkFieldNames refuses fields of a JSON list of network selection elements that are not
// spelled exactly as the specification does, which encoding/json would match regardless of
// case.
func checkFieldNames(list string) error {
	var elems []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(list), &elems); err != nil {
		return fmt.Errorf("network selection: JSON list: %w", err)
	}
	for i, e := range elems {
		for k := range e {
			if !slices.Contains(selectionFields, k) {
				return fmt.Errorf("network selection element %d: unknown field %q", i, k)
			}
		}
	}
	return nil
}

// parseShortSelection parses one element of the short form.
func parseShortSelection(e string) (NetworkSelection, error) {
	var sel NetworkSelection
	if e == "" {
		return sel, errors.New("empty element")
	}
	if strings.Count(e, "/") > 1 {
		return sel, errors.New(`more than one "/"`)
	}
	if strings.Count(e, "@") > 1 {
		return sel, errors.New(`more than one "@"`)
	}
	if at, slash := strings.Index(e, "@"), strings.Index(e, "/"); at >= 0 && at < slash {
		return sel, errors.New(`"@interface" must come last, after "namespace/name"`)
	}
	if ns, rest, ok := strings.Cut(e, "/"); ok {
		if ns == "" {
			return sel, errors.New(`empty namespace before "/"`)
		}
		sel.Namespace, e = ns, rest
	}
	if name, ifName, ok := strings.Cut(e, "@"); ok {
		if ifName == "" {
			return sel, errors.New(`empty interface after "@"`)
		}
		sel.Interface, e = ifName, name
	}
	sel.Name = e
	return sel, nil
}

// check validates sel and normalizes its protocols and cni-args.
func (sel *NetworkSelection) check() error {
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
		pm := &sel.PortMappings[i]
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return fmt.Errorf("port mapping %d: host port %d out of range 1-65535", i, pm.HostPort)
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return fmt.Errorf("port mapping %d: container port %d out of range 1-65535", i, pm.ContainerPort)
		}
		switch p := strings.ToLower(pm.Protocol); p {
		case "":
			pm.Protocol = "tcp"
		case "tcp", "udp", "sctp":
			pm.Protocol = p
		default:
			return fmt.Errorf("port mapping %d: protocol %q is not tcp, udp or sctp", i, pm.Protocol)
		}
		if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
			return fmt.Errorf("port mapping %d: host IP %q is not an IP address", i, pm.HostIP)
		}
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
