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
	// DefaultMaxPodNetworks is how many networks one pod may be attached to, the default
	// network included, unless WithMaxPodNetworks says otherwise.
	DefaultMaxPodNetworks = 16
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
	// ErrRollbackFailed: a set-up failed and some of what it attached could not be deleted
	// again. The Plugin keeps its record of the sandbox, so TearDownPod retries the deletion.
	// A SetUpPod error without it means nothing of the set-up is left.
	ErrRollbackFailed = errors.New("rollback failed")
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
	stateDir         string
	noFallback       bool
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
	maxPodNetworks   int

	// source replaces the confwatch.Watcher; for tests.
	source snapshotSource
}

// WithConfDir sets the CNI configuration directory (default DefaultConfDir).
func WithConfDir(dir string) Option { return func(o *options) { o.confDir = dir } }

// WithBinDirs sets the directories searched for plugin binaries (default DefaultBinDir).
func WithBinDirs(dirs ...string) Option { return func(o *options) { o.binDirs = dirs } }

// WithCacheDir sets libcni's cache directory (default DefaultCacheDir). Every runtime on a node
// usually shares it; see WithStateDir.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithStateDir sets the directory where the Plugin records every attachment it makes, from
// before the first plugin of a set-up runs until the attachment is deleted: the record is how a
// set-up cut off by a crash is torn down with the configuration it ran with, and the only thing
// GC takes as proof that an attachment is this runtime's to delete. The directory must belong
// to this Plugin alone: two Plugins recording into one directory would each take the other's
// pods for their own. The default, <cache dir>/cnishim/attachments, is private only while no
// other runtime embedding cnishim shares the cache dir, so a runtime should pass a directory of
// its own state (cnishim serve passes <state-dir>/network).
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithFallbackTeardown says whether TearDownPod, for a sandbox with neither a record nor a
// libcni cache entry, still sends a DEL to the current default network and the pod's extra
// networks (default true, as the kubelet did for pods set up before libcni cached
// attachments). A runtime whose every sandbox was set up by a Plugin keeping records turns it
// off, so that no network a pod never joined gets a DEL.
func WithFallbackTeardown(enabled bool) Option {
	return func(o *options) { o.noFallback = !enabled }
}

// WithNetworkName pins the default network by name.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithLoopback sets how the pod's loopback interface is brought up.
func WithLoopback(m LoopbackMode) Option { return func(o *options) { o.loopback = m } }

// WithMaxPodNetworks caps how many networks one pod may be attached to, the default network
// included (default DefaultMaxPodNetworks): a pod asking for more is refused with
// ErrInvalidPod, naming the cap, before anything is created for it. Every network costs the
// node a plugin chain and usually an address, and a pod's spec is written by whoever may create
// pods, so the cap keeps one pod from draining an address pool or filling the ADD lane. n < 1
// means the default.
func WithMaxPodNetworks(n int) Option { return func(o *options) { o.maxPodNetworks = n } }

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

// WithExec replaces the executor of plugin binaries (by default, libcni's way of running them,
// waiting for each plugin's exit in the runtime's network poller); for tests.
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
