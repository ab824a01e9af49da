package cninetwork

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
)

// attachment is one network a pod is to be attached to.
type attachment struct {
	network string
	list    *libcni.NetworkConfigList
	ifName  string
	caps    []string
	// extra is set for the pod's extra networks, whose capability args own holds.
	extra bool
	own   map[string]any
	// defaultRoute holds the gateways the pod's default routes are to go through on this
	// attachment, at most one per family.
	defaultRoute []net.IP
}

// plan returns the attachments for pod from snap: the default network on eth0, then the extra
// networks on their interfaces (an empty name gets the lowest free ethN). What ValidatePod
// refuses is refused here too, with ErrInvalidPod.
func (p *Plugin) plan(snap *confwatch.Snapshot, pod *Pod) ([]attachment, error) {
	extra, err := p.podNetworks(snap, pod)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{defaultIfName: true, "lo": true}
	for _, x := range extra {
		used[x.Interface] = true
	}
	plan := make([]attachment, 0, 1+len(extra))
	plan = append(plan, p.attachmentFor(snap.Default, defaultIfName))
	next := 1
	for _, x := range extra {
		n := snap.Network(x.Name)
		ifName := x.Interface
		if ifName == "" {
			for used["eth"+strconv.Itoa(next)] {
				next++
			}
			ifName = "eth" + strconv.Itoa(next)
			used[ifName] = true
		}
		a := p.attachmentFor(n, ifName)
		a.extra = true
		a.own = ownCaps(x)
		for _, gw := range x.DefaultRoute {
			a.defaultRoute = append(a.defaultRoute, net.ParseIP(gw)) // checked by podNetworks
		}
		if len(x.CNIArgs) > 0 {
			l, err := withCNIArgs(a.list, x.CNIArgs)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: extra network %q: cni-args: %w", ErrInvalidPod, pod, x.Name, err)
			}
			a.list = l
		}
		plan = append(plan, a)
	}
	return plan, nil
}

// ownCaps returns the capability args an extra network's attachment asks for itself.
func ownCaps(x NetworkSelection) map[string]any {
	own := make(map[string]any, 4)
	if len(x.IPs) > 0 {
		own[capIPs] = x.IPs
	}
	if x.MAC != "" {
		own[capMAC] = x.MAC
	}
	if len(x.PortMappings) > 0 {
		own[capPortMappings] = x.PortMappings // normalized by Normalize
	}
	if bw := x.Bandwidth; bw != nil && *bw != (Bandwidth{}) {
		own[capBandwidth] = *bw
	}
	return own
}

// withCNIArgs returns a copy of list whose every plugin configuration carries "args":
// {"cni": args}, the CNI conventions' place for them (libcni has no runtime argument for it),
// beside any other "args" the plugin's configuration has.
func withCNIArgs(list *libcni.NetworkConfigList, args json.RawMessage) (*libcni.NetworkConfigList, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return nil, err
	}
	var plugins []map[string]json.RawMessage
	if err := json.Unmarshal(raw["plugins"], &plugins); err != nil {
		return nil, fmt.Errorf("network %q: plugins: %w", list.Name, err)
	}
	for _, pl := range plugins {
		pa := map[string]json.RawMessage{}
		if old, ok := pl["args"]; ok && string(old) != "null" {
			if err := json.Unmarshal(old, &pa); err != nil {
				return nil, fmt.Errorf("network %q: plugin %s: args: %w", list.Name, pl["type"], err)
			}
		}
		pa["cni"] = args
		b, err := json.Marshal(pa)
		if err != nil {
			return nil, err
		}
		pl["args"] = b
	}
	b, err := json.Marshal(plugins)
	if err != nil {
		return nil, err
	}
	raw["plugins"] = b
	all, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	out, err := libcni.ConfListFromBytes(all)
	if err != nil {
		return nil, err
	}
	if len(out.Plugins) != len(list.Plugins) {
		return nil, fmt.Errorf("network %q: %d plugins with cni-args, %d without", list.Name, len(out.Plugins), len(list.Plugins))
	}
	return out, nil
}

// runtimeConf returns the runtime arguments of attaching the pod to a, in netns nsPath: the
// pod's capability args a's network declares, an extra network's own values (see
// NetworkSelection) replacing the pod's port mappings and bandwidth.
func (a attachment) runtimeConf(sandboxID string, pa *podArgs, nsPath string) *libcni.RuntimeConf {
	rt := runtimeConf(sandboxID, pa, a.caps, a.ifName, nsPath)
	if !a.extra {
		return rt
	}
	delete(rt.CapabilityArgs, capPortMappings)
	delete(rt.CapabilityArgs, capBandwidth)
	for _, c := range a.caps {
		if v, ok := a.own[c]; ok {
			if rt.CapabilityArgs == nil {
				rt.CapabilityArgs = make(map[string]any, len(a.own))
			}
			rt.CapabilityArgs[c] = v
		}
	}
	if len(rt.CapabilityArgs) == 0 {
		rt.CapabilityArgs = nil
	}
	return rt
}

func (p *Plugin) attachmentFor(n *confwatch.Network, ifName string) attachment {
	return attachment{network: n.Name, list: p.listFor(n), ifName: ifName, caps: n.Capabilities}
}

// listFor returns the libcni list to attach pods to n with. libcni caches the list's Bytes
// at ADD for the teardown; when n's plugins do not all come from those bytes (plugins loaded
// from the network's drop-in directory), the list is rebuilt with every plugin inlined, so the
// cached configuration is the whole chain that ran. Lists are kept by the network's digest.
func (p *Plugin) listFor(n *confwatch.Network) *libcni.NetworkConfigList {
	key := n.Name + "\x00" + n.Digest
	if n.Digest == "" {
		key = fmt.Sprintf("%s\x00%p", n.Name, n.Config)
	}
	p.listsMu.Lock()
	l := p.lists[key]
	p.listsMu.Unlock()
	if l != nil {
		return l
	}
	l = inlinedList(n.Config)
	p.listsMu.Lock()
	if p.lists == nil || len(p.lists) >= 64 {
		p.lists = make(map[string]*libcni.NetworkConfigList) // old configurations age out
	}
	p.lists[key] = l
	p.listsMu.Unlock()
	return l
}

// inlinedList returns list if its Bytes hold all its plugins, else an equivalent list whose
// Bytes do. It returns list unchanged if it cannot do better.
func inlinedList(list *libcni.NetworkConfigList) *libcni.NetworkConfigList {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return list
	}
	var inlined []json.RawMessage
	if pl, ok := raw["plugins"]; ok {
		if err := json.Unmarshal(pl, &inlined); err != nil {
			return list
		}
	}
	if len(inlined) == len(list.Plugins) {
		return list
	}
	plugins := make([]json.RawMessage, len(list.Plugins))
	for i, pc := range list.Plugins {
		plugins[i] = pc.Bytes
	}
	b, err := json.Marshal(plugins)
	if err != nil {
		return list
	}
	raw["plugins"] = b
	raw["loadOnlyInlinedPlugins"] = json.RawMessage("true")
	all, err := json.Marshal(raw)
	if err != nil {
		return list
	}
	out, err := libcni.ConfListFromBytes(all)
	if err != nil || len(out.Plugins) != len(list.Plugins) {
		return list
	}
	return out
}

// recordedAttachments describes, as libcni caches them, the attachments a set-up is about to
// make, in order: the loopback network when loRT is set (WithLoopbackPlugin), then plan with rts.
func recordedAttachments(lo *libcni.NetworkConfigList, loRT *libcni.RuntimeConf, plan []attachment, rts []*libcni.RuntimeConf) []*libcni.NetworkAttachment {
	att := func(network string, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *libcni.NetworkAttachment {
		return &libcni.NetworkAttachment{
			ContainerID: rt.ContainerID, Network: network, IfName: rt.IfName, Config: list.Bytes,
			NetNS: rt.NetNS, CniArgs: rt.Args, CapabilityArgs: rt.CapabilityArgs,
		}
	}
	out := make([]*libcni.NetworkAttachment, 0, len(plan)+1)
	if loRT != nil {
		out = append(out, att(loopbackNetworkName, lo, loRT))
	}
	for i, a := range plan {
		out = append(out, att(a.network, a.list, rts[i]))
	}
	return out
}
