package cni

import "sync"

// Constants of go-cni's API, with go-cni's values.
const (
	// CNIPluginName is the name go-cni's users register their CNI plugin under.
	CNIPluginName = "cni"
	// DefaultMaxConfNum is how many files of the configuration directory WithDefaultConf
	// loads unless WithPluginMaxConfNum says otherwise.
	DefaultMaxConfNum = 1
	// DefaultPrefix is the prefix of the pod's interface names (eth0, eth1, ...).
	DefaultPrefix = "eth"
	// DefaultNetDir is the conventional CNI configuration directory.
	DefaultNetDir = "/etc/cni/net.d"
	// DefaultCNIDir is the conventional CNI plugin directory.
	DefaultCNIDir = "/opt/cni/bin"
	// VendorCNIDirTemplate is go-cni's template of a vendor's plugin directory.
	VendorCNIDirTemplate = "%s/opt/%s/bin"
)

// RWMutex is go-cni's exported lock type, kept for callers that name it.
type RWMutex = sync.RWMutex

// PortMapping is a host port forwarded to a port of the pod (the portMappings capability).
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string
	HostIP        string
}

// IPRanges is one range of the ipRanges capability.
type IPRanges struct {
	Subnet     string
	RangeStart string
	RangeEnd   string
	Gateway    string
}

// BandWidth defines the ingress/egress rate and burst limits, in bits per second and bits (the
// bandwidth capability).
type BandWidth struct {
	IngressRate  uint64
	IngressBurst uint64
	EgressRate   uint64
	EgressBurst  uint64
}

// DNS defines the dns config (the dns capability).
type DNS struct {
	// List of DNS servers of the cluster.
	Servers []string
	// List of DNS search domains of the cluster.
	Searches []string
	// List of DNS options.
	Options []string
}

// CNIOpt is go-cni's deprecated name of Opt.
//
// Deprecated: use Opt.
type CNIOpt = Opt

// CNIResult is go-cni's deprecated name of Result.
//
// Deprecated: use Result.
type CNIResult = Result
