// Package impls drives the three implementations the benchmark compares over the same pods:
// cnishim's Plugin, containerd's go-cni, and raw libcni (the floor: the plugins alone, no
// loopback, no shim).
package impls

import (
	"context"
	"fmt"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// Names of the implementations.
const (
	Cnishim = "cnishim"
	GoCNI   = "go-cni"
	Floor   = "floor"
)

// PodSpec is one benchmark pod: what a CRI runtime would know of a sandbox when it sets up
// its network.
type PodSpec struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	NetNS     string `json:"netns"`
	// HostPort, when non-zero, asks for one TCP port mapping HostIP:HostPort -> 80.
	HostPort int32  `json:"hostPort,omitempty"`
	HostIP   string `json:"hostIP,omitempty"`
	// ExtraNetwork, when set, names a second network the pod is on too, interface
	// ExtraIfName, besides the default one (cninetwork.Pod.ExtraNetworks). Only cnishim
	// attaches a pod to networks of its choice; the others refuse such a pod.
	ExtraNetwork string `json:"extraNetwork,omitempty"`
}

// ExtraIfName is the pod's interface on its PodSpec.ExtraNetwork.
const ExtraIfName = "net1"

// errNoExtraNetworks is what go-cni and the floor answer for a pod with an extra network:
// they attach every pod to the same networks, so they have no comparable run.
func errNoExtraNetworks(impl string, p *PodSpec) error {
	return fmt.Errorf("%s: pod %s: a network per pod (%s) is not supported", impl, p, p.ExtraNetwork)
}

// ContainerPort is the pod side of every benchmark port mapping.
const ContainerPort = 80

// Config says where an implementation finds its configuration and plugins.
type Config struct {
	ConfDir  string `json:"confDir"`
	BinDir   string `json:"binDir"`
	CacheDir string `json:"cacheDir"`
	// IPAMBinDir, if set, is a second plugin directory, searched after BinDir: the slow
	// IPAM's.
	IPAMBinDir string `json:"ipamBinDir,omitempty"`
	// Limits are cnishim's admission limits; nil means the Plugin's default. Ignored by the
	// other implementations.
	Limits *Limits `json:"limits,omitempty"`
}

// binDirs are the plugin directories, in search order.
func (c *Config) binDirs() []string {
	if c.IPAMBinDir == "" {
		return []string{c.BinDir}
	}
	return []string{c.BinDir, c.IPAMBinDir}
}

// Impl sets pods up and tears them down. Its methods are safe for concurrent use on
// different pods.
type Impl interface {
	SetUp(ctx context.Context, p *PodSpec) error
	TearDown(ctx context.Context, p *PodSpec) error
	// Close releases what the implementation holds; it waits for nothing in flight.
	Close() error
}

// New builds the named implementation and waits until it is ready to set pods up.
func New(ctx context.Context, name string, cfg Config) (Impl, error) {
	switch name {
	case Cnishim:
		return newCnishim(ctx, cfg)
	case GoCNI:
		return newGoCNI(cfg)
	case Floor:
		return newFloor(cfg)
	}
	return nil, fmt.Errorf("implementation %q: unknown (want %s, %s or %s)", name, Cnishim, GoCNI, Floor)
}

// cniArgs are the CNI_ARGS every implementation passes, the kubelet's set.
func cniArgs(p *PodSpec) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", p.Namespace},
		{"K8S_POD_NAME", p.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
		{"K8S_POD_UID", p.UID},
	}
}

// portMapping is the portMappings capability argument as libcni passes it to portmap.
type portMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func (p *PodSpec) String() string { return p.Namespace + "/" + p.Name + " (" + short(p.ID) + ")" }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Limits are cnishim's admission limits: the most plugin chains of each kind in flight;
// 0 means unbounded.
type Limits = cninetwork.AdmissionLimits

// LimitsString describes limits in a few words; nil is the Plugin's default.
func LimitsString(l *Limits) string {
	if l == nil {
		return "default"
	}
	add := fmt.Sprint(l.Add)
	if l.AdaptiveAdd && l.Add > 0 {
		add += " (adaptive floor)"
	}
	return fmt.Sprintf("add=%s del=%d check=%d status=%d gc=%d", add, l.Del, l.Check, l.Status, l.GC)
}
