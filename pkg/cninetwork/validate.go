package cninetwork

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/cnishim/cnishim/pkg/confwatch"
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
// NetworkSelection.check leaves them) without changing pod: each selection as
// ParseNetworkSelection checks it, its namespace one the pod may use (see NetworkSelection),
// interfaces not eth0 or lo and not used twice, at most one default-route gateway per IP
// family across the pod. Errors wrap ErrInvalidPod and name the network.
func (pod *Pod) extraNetworks() ([]NetworkSelection, error) {
	if pod.networksErr != nil {
		return nil, fmt.Errorf("%w: %s: annotation %s: %w", ErrInvalidPod, pod, NetworksAnnotation, pod.networksErr)
	}
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
		sel.PortMappings = slices.Clone(x.PortMappings) // check normalizes them in place
		if err := sel.check(); err != nil {
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
