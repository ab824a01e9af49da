package cninetwork

import (
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
	// DefaultStatusInterval is how often the default network's plugins are asked for their
	// CNI STATUS when the network's cniVersion is 1.1.0 or later.
	DefaultStatusInterval = 5 * time.Second
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
	// It needs Linux and CAP_NET_ADMIN / CAP_SYS_ADMIN.
	LoopbackInProcess LoopbackMode = iota
	// LoopbackPlugin runs the loopback CNI plugin, as dockershim did, on a built-in network
	// named LoopbackNetworkName.
	LoopbackPlugin
	// LoopbackOff leaves lo alone.
	LoopbackOff
)

// LoopbackNetworkName is the name of the built-in network LoopbackPlugin attaches pods to. It
// appears in libcni's cache as any network does.
const LoopbackNetworkName = "cni-loopback"

// Option configures a Plugin.
type Option func(*options)

type options struct {
	confDir          string
	binDirs          []string
	cacheDir         string
	networkName      string
	loopback         LoopbackMode
	operationTimeout time.Duration
	statusInterval   time.Duration
	exec             invoke.Exec
	passEnv          bool
	registerer       prometheus.Registerer
	watchOpts        []confwatch.Option
	podCIDRs         []string
	admission        *AdmissionLimits

	// source replaces the confwatch.Watcher; for tests.
	source snapshotSource
}

// WithConfDir sets the CNI configuration directory (default DefaultConfDir).
func WithConfDir(dir string) Option { return func(o *options) { o.confDir = dir } }

// WithBinDirs sets the directories searched for plugin binaries (default DefaultBinDir).
func WithBinDirs(dirs ...string) Option { return func(o *options) { o.binDirs = dirs } }

// WithCacheDir sets libcni's cache directory (default DefaultCacheDir). The Plugin also keeps
// its records of set-ups under way there, in cnishim/setups/, so that a set-up cut off by a
// crash is torn down with the configuration it ran with.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithNetworkName pins the default network by name.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithLoopback sets how the pod's loopback interface is brought up.
func WithLoopback(m LoopbackMode) Option { return func(o *options) { o.loopback = m } }

// WithOperationTimeout caps every operation (default DefaultOperationTimeout). The rollback
// of a failed setup gets the same budget again, outside the caller's cancellation.
func WithOperationTimeout(d time.Duration) Option {
	return func(o *options) { o.operationTimeout = d }
}

// WithStatusInterval sets how often the background poller asks a CNI 1.1 default network for
// its STATUS (default DefaultStatusInterval).
func WithStatusInterval(d time.Duration) Option {
	return func(o *options) { o.statusInterval = d }
}

// WithExec replaces libcni's plugin executor; for tests.
func WithExec(e invoke.Exec) Option { return func(o *options) { o.exec = e } }

// WithPluginEnv says whether plugins inherit the runtime's whole environment. By default
// (false) a plugin receives only the CNI_* variables and PATH, so the runtime's own
// environment (credentials, proxies, tokens) never reaches third-party plugins.
func WithPluginEnv(passthrough bool) Option { return func(o *options) { o.passEnv = passthrough } }

// WithRegisterer registers the plugin's Prometheus metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithWatcherOptions passes options through to the confwatch.Watcher.
func WithWatcherOptions(opts ...confwatch.Option) Option {
	return func(o *options) { o.watchOpts = append(o.watchOpts, opts...) }
}

// WithPodCIDRs sets the node's pod CIDRs at start (see Plugin.SetPodCIDRs).
func WithPodCIDRs(cidrs ...string) Option { return func(o *options) { o.podCIDRs = cidrs } }
