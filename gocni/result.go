package cni

import (
	"fmt"
	"net"

	cnilibrary "github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// IPConfig is one IP of an interface and its gateway.
type IPConfig struct {
	IP      net.IP
	Gateway net.IP
}

// Result contains the network information returned by CNI.Setup
//
// a) Interfaces list. Depending on the plugin, this can include the sandbox
//
//	(eg, container or hypervisor) interface name and/or the host interface
//	name, the hardware addresses of each interface, and details about the
//	sandbox (if any) the interface is in.
//
// b) IP configuration assigned to each  interface. The IPv4 and/or IPv6 addresses,
//
//	gateways, and routes assigned to sandbox and/or host interfaces.
//
// c) DNS information. Dictionary that includes DNS information for nameservers,
//
//	domain, search domains and options.
type Result struct {
	Interfaces map[string]*Config
	DNS        []types.DNS
	Routes     []*types.Route
	raw        []*types100.Result
}

// Raw returns the raw CNI results of multiple networks.
func (r *Result) Raw() []*types100.Result {
	return r.raw
}

// Config is one interface of a Result.
type Config struct {
	IPConfigs  []*IPConfig
	Mac        string
	Sandbox    string
	PciID      string
	SocketPath string
}

// result builds Setup's Result from the Plugin's status: each attachment's result as its
// plugins returned it, read back from libcni's cache (so the host-side interfaces, gateways,
// routes and DNS are there as in go-cni's), else what the status holds.
func (c *libcni) result(id, path string, st *cninetwork.PodNetworkStatus) (*Result, error) {
	cni := cnilibrary.NewCNIConfigWithCacheDir(c.pluginDirs, c.cacheDir, nil)
	var results []*types100.Result
	for _, a := range st.Attachments {
		list := &cnilibrary.NetworkConfigList{Name: a.Network, CNIVersion: types100.ImplementedSpecVersion}
		rt := &cnilibrary.RuntimeConf{ContainerID: id, NetNS: path, IfName: a.IfName}
		if cached, err := cni.GetNetworkListCachedResult(list, rt); err == nil && cached != nil {
			if r, err := types100.NewResultFromResult(cached); err == nil {
				results = append(results, r)
				continue
			}
		}
		results = append(results, statusResult(path, a))
	}
	return createResult(c.prefix, results)
}

// statusResult is an attachment's result made from the Plugin's status alone.
func statusResult(path string, a cninetwork.AttachmentStatus) *types100.Result {
	r := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	r.Interfaces = []*types100.Interface{{Name: a.IfName, Mac: a.MAC, Sandbox: path}}
	zero := 0
	for _, ip := range a.IPs {
		bits := 128
		if ip.To4() != nil {
			bits = 32
		}
		r.IPs = append(r.IPs, &types100.IPConfig{Interface: &zero, Address: net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}})
	}
	if a.DNS != nil {
		r.DNS = *a.DNS
	}
	return r
}

// createResult is go-cni's: every interface of every result, each IP on its interface (the
// default one when a result does not say), the default interface (prefix0) required.
func createResult(prefix string, results []*types100.Result) (*Result, error) {
	def := getIfName(prefix, 0)
	r := &Result{
		Interfaces: map[string]*Config{def: {}},
		raw:        results,
	}
	for _, result := range results {
		for _, intf := range result.Interfaces {
			r.Interfaces[intf.Name] = &Config{
				Mac:        intf.Mac,
				Sandbox:    intf.Sandbox,
				SocketPath: intf.SocketPath,
				PciID:      intf.PciID,
			}
		}
		for _, ipConf := range result.IPs {
			if ipConf == nil {
				return nil, fmt.Errorf("invalid interface config: invalid IP configuration (nil): %w", ErrInvalidResult)
			}
			name := def
			if ipConf.Interface != nil {
				if *ipConf.Interface < 0 || *ipConf.Interface >= len(result.Interfaces) {
					return nil, fmt.Errorf("invalid interface config: interface number %d of %d interfaces: %w",
						*ipConf.Interface, len(result.Interfaces), ErrInvalidResult)
				}
				name = result.Interfaces[*ipConf.Interface].Name
			}
			cfg, ok := r.Interfaces[name]
			if !ok {
				cfg = &Config{}
				r.Interfaces[name] = cfg
			}
			cfg.IPConfigs = append(cfg.IPConfigs, &IPConfig{IP: ipConf.Address.IP, Gateway: ipConf.Gateway})
		}
		r.DNS = append(r.DNS, result.DNS)
		r.Routes = append(r.Routes, result.Routes...)
	}
	return r, nil
}

// GetCNIResultFromResults returns a Result from the raw results of networks, as go-cni's
// deprecated method does.
//
// Deprecated: the Result of Setup has them.
func (c *libcni) GetCNIResultFromResults(results []*types100.Result) (*Result, error) {
	return createResult(c.prefix, results)
}
