package cninetwork

// This file holds the package's exported surface. The implementation is filled in by the
// cninetwork work; signatures here are the contract other packages (cmd/cnishim, test/e2e,
// test/bench) code against.

import (
	"context"
	"errors"
	"time"

	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/prometheus/client_golang/prometheus"
)

// Default paths and limits, the kubelet's.
const (
	DefaultConfDir          = "/etc/cni/net.d"
	DefaultBinDir           = "/opt/cni/bin"
	DefaultCacheDir         = "/var/lib/cni"
	DefaultOperationTimeout = 220 * time.Second
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotReady: no network is ready (see Status for why).
	ErrNotReady = errors.New("network plugin not ready")
	// ErrInvalidPod: the Pod description would be unsafe or ambiguous to hand to a plugin.
	ErrInvalidPod = errors.New("invalid pod")
	// ErrUnknownSandbox: the plugin knows no network for the sandbox.
	ErrUnknownSandbox = errors.New("unknown pod sandbox")
	// ErrTimeout: an operation or a plugin exec ran past its deadline.
	ErrTimeout = errors.New("timed out")
)

// LoopbackMode says how the pod's loopback interface is brought up.
type LoopbackMode int

const (
	// LoopbackInProcess brings lo up inside the netns with netlink, without exec (default).
	LoopbackInProcess LoopbackMode = iota
	// LoopbackPlugin runs the loopback CNI plugin, as dockershim did.
	LoopbackPlugin
	// LoopbackOff leaves lo alone.
	LoopbackOff
)

// Option configures a Plugin.
type Option func(*options)

type options struct {
	confDir          string
	binDirs          []string
	cacheDir         string
	networkName      string
	loopback         LoopbackMode
	operationTimeout time.Duration
	exec             invoke.Exec
	registerer       prometheus.Registerer
	watchOpts        []confwatch.Option
	podCIDRs         []string
}

// WithConfDir sets the CNI configuration directory (default DefaultConfDir).
func WithConfDir(dir string) Option { return func(o *options) { o.confDir = dir } }

// WithBinDirs sets the directories searched for plugin binaries (default DefaultBinDir).
func WithBinDirs(dirs ...string) Option { return func(o *options) { o.binDirs = dirs } }

// WithCacheDir sets libcni's cache directory (default DefaultCacheDir).
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithNetworkName pins the default network by name.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithLoopback sets how the pod's loopback interface is brought up.
func WithLoopback(m LoopbackMode) Option { return func(o *options) { o.loopback = m } }

// WithOperationTimeout caps every operation (default DefaultOperationTimeout).
func WithOperationTimeout(d time.Duration) Option {
	return func(o *options) { o.operationTimeout = d }
}

// WithExec replaces libcni's plugin executor; for tests.
func WithExec(e invoke.Exec) Option { return func(o *options) { o.exec = e } }

// WithRegisterer registers the plugin's Prometheus metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithWatcherOptions passes options through to the confwatch.Watcher.
func WithWatcherOptions(opts ...confwatch.Option) Option {
	return func(o *options) { o.watchOpts = append(o.watchOpts, opts...) }
}

// WithPodCIDRs sets the node's pod CIDRs at start (see Plugin.SetPodCIDRs).
func WithPodCIDRs(cidrs ...string) Option { return func(o *options) { o.podCIDRs = cidrs } }

// Plugin is the CNI network plugin. Its methods are safe for concurrent use.
type Plugin struct {
	opts options
}

// New builds a Plugin. It does no I/O and starts nothing; call Run.
func New(opts ...Option) (*Plugin, error) { panic("unimplemented") }

// Run scans the configuration directory once, synchronously, then starts the watcher and the
// background STATUS poller and returns. Close stops them.
func (p *Plugin) Run(ctx context.Context) error { panic("unimplemented") }

// Close stops everything Run started and waits for it.
func (p *Plugin) Close() error { panic("unimplemented") }

// Name returns the plugin's name, "cni".
func (p *Plugin) Name() string { return "cni" }

// Status returns nil when a default network is ready; otherwise an error wrapping ErrNotReady
// that says why. It never touches the disk or execs a plugin.
func (p *Plugin) Status(ctx context.Context) error { panic("unimplemented") }

// Snapshot returns the current configuration snapshot.
func (p *Plugin) Snapshot() *confwatch.Snapshot { panic("unimplemented") }

// SetUpPod attaches the pod to its networks and returns its network status.
func (p *Plugin) SetUpPod(ctx context.Context, pod *Pod) (*PodNetworkStatus, error) {
	panic("unimplemented")
}

// TearDownPod detaches the pod from every network it was set up on. It is idempotent.
func (p *Plugin) TearDownPod(ctx context.Context, pod *Pod) error { panic("unimplemented") }

// GetPodNetworkStatus returns the pod's network status, from memory or libcni's cache.
func (p *Plugin) GetPodNetworkStatus(ctx context.Context, pod *Pod) (*PodNetworkStatus, error) {
	panic("unimplemented")
}

// CheckPod runs CNI CHECK for the pod's attachments.
func (p *Plugin) CheckPod(ctx context.Context, pod *Pod) error { panic("unimplemented") }

// GC runs CNI GC on every valid network with validSandboxIDs as the live set, and removes stale
// libcni cache entries.
func (p *Plugin) GC(ctx context.Context, validSandboxIDs []string) error { panic("unimplemented") }

// SetPodCIDRs sets the node's pod CIDRs, passed to plugins as the ipRanges capability arg.
func (p *Plugin) SetPodCIDRs(cidrs ...string) error { panic("unimplemented") }

// Event handles a kubelet network event; NET_PLUGIN_EVENT_POD_CIDR_CHANGE with a "pod-cidr"
// detail sets the pod CIDRs.
func (p *Plugin) Event(name string, details map[string]any) { panic("unimplemented") }
