package cninetwork

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults. The configuration and plugin directories are confwatch's (confwatch.DefaultConfDir,
// confwatch.DefaultBinDir), the cache directory libcni's (libcni.CacheDir, /var/lib/cni).
const (
	// DefaultOperationTimeout caps each plugin chain's run (see WithOperationTimeout).
	DefaultOperationTimeout = 220 * time.Second
	// DefaultMaxPodNetworks is how many networks one pod may be attached to, the default
	// network included, unless WithMaxPodNetworks says otherwise.
	DefaultMaxPodNetworks = 16
)

// gcGateWait is how long a GC waits for the set-ups that came before it (see Plugin.GC).
const gcGateWait = 10 * time.Second

// statusInterval is how often the default network's plugins are asked for their CNI STATUS
// when the network's cniVersion is 1.1.0 or later.
const statusInterval = 5 * time.Second

// loopbackMode says how the pod's loopback interface is brought up.
type loopbackMode int

const (
	// loopbackInProcess brings lo up inside the netns with netlink, without exec (default).
	// It needs Linux and CAP_NET_ADMIN / CAP_SYS_ADMIN.
	loopbackInProcess loopbackMode = iota
	// loopbackPlugin runs the loopback CNI plugin (WithLoopbackPlugin).
	loopbackPlugin
	// loopbackOff leaves lo alone (WithoutLoopback).
	loopbackOff
)

// loopbackNetworkName is the name of the built-in network WithLoopbackPlugin attaches pods to. It
// appears in libcni's cache as any network does.
const loopbackNetworkName = "cni-loopback"

// Option configures a Plugin.
type Option func(*options)

type options struct {
	confDir          string
	binDirs          []string
	cacheDir         string
	stateDir         string
	networkName      string
	loopback         loopbackMode
	operationTimeout time.Duration
	statusInterval   time.Duration
	gcGateWait       time.Duration
	exec             invoke.Exec
	passEnv          bool
	registerer       prometheus.Registerer
	admission        *AdmissionLimits
	maxPodNetworks   int

	// source replaces the confwatch.Watcher, for the package's tests.
	source snapshotSource
}

func init() {
	seam.Exec = func(e invoke.Exec) any { return Option(func(o *options) { o.exec = e }) }
	seam.PluginEnv = func(passthrough bool) any { return Option(func(o *options) { o.passEnv = passthrough }) }
	seam.StatusInterval = func(d time.Duration) any { return Option(func(o *options) { o.statusInterval = d }) }
}

// WithConfDir sets the CNI configuration directory (default confwatch.DefaultConfDir), as
// confwatch.New takes it: an empty dir makes New fail.
func WithConfDir(dir string) Option { return func(o *options) { o.confDir = dir } }

// WithBinDirs sets the directories searched for plugin binaries, in order (default
// confwatch.DefaultBinDir), as confwatch.WithBinDirs does: the same dirs, made absolute,
// validate the configurations and run the plugins. An empty list, or an empty dir, makes New
// fail.
func WithBinDirs(dirs ...string) Option { return func(o *options) { o.binDirs = slices.Clone(dirs) } }

// WithCacheDir sets libcni's cache directory (default libcni.CacheDir, /var/lib/cni). Every runtime on a node
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

// WithNetworkName pins the default network by name.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithLoopbackPlugin brings the pod's loopback interface up with the loopback CNI plugin, as
// dockershim did, on a built-in network named "cni-loopback" that libcni caches as any
// network, instead of in-process with netlink (the default, which needs Linux and
// CAP_NET_ADMIN in the pod's netns). Of WithLoopbackPlugin and WithoutLoopback, the last given
// wins.
func WithLoopbackPlugin() Option { return func(o *options) { o.loopback = loopbackPlugin } }

// WithoutLoopback leaves the pod's loopback interface alone, for a runtime that brings it up
// itself. Of WithLoopbackPlugin and WithoutLoopback, the last given wins.
func WithoutLoopback() Option { return func(o *options) { o.loopback = loopbackOff } }

// WithMaxPodNetworks caps how many networks one pod may be attached to, the default network
// included (default DefaultMaxPodNetworks): a pod asking for more is refused with
// ErrInvalidPod, naming the cap, before anything is created for it. Every network costs the
// node a plugin chain and usually an address, and a pod's spec is written by whoever may create
// pods, so the cap keeps one pod from draining an address pool or filling the ADD lane. n < 1
// means the default.
func WithMaxPodNetworks(n int) Option { return func(o *options) { o.maxPodNetworks = n } }

// WithOperationTimeout caps each plugin chain's run, from its admission on (default
// DefaultOperationTimeout); see the package doc for how it combines with the caller's context.
func WithOperationTimeout(d time.Duration) Option {
	return func(o *options) { o.operationTimeout = d }
}

// WithRegisterer registers the plugin's Prometheus metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// newOptions applies opts to the defaults, then checks the result and fills in what was left
// zero, so the order of opts never matters.
func newOptions(opts []Option) (options, error) {
	o := options{
		confDir:          confwatch.DefaultConfDir,
		binDirs:          []string{confwatch.DefaultBinDir},
		cacheDir:         libcni.CacheDir,
		operationTimeout: DefaultOperationTimeout,
		statusInterval:   statusInterval,
		gcGateWait:       gcGateWait,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.operationTimeout < 0:
		return o, fmt.Errorf("operation timeout %s: must not be negative", o.operationTimeout)
	case o.statusInterval < 0:
		return o, fmt.Errorf("status interval %s: must not be negative", o.statusInterval)
	}
	if o.cacheDir == "" {
		o.cacheDir = libcni.CacheDir
	}
	if o.stateDir == "" {
		o.stateDir = filepath.Join(o.cacheDir, recordsDir)
	}
	if o.operationTimeout == 0 {
		o.operationTimeout = DefaultOperationTimeout
	}
	if o.statusInterval == 0 {
		o.statusInterval = statusInterval
	}
	if o.maxPodNetworks < 1 {
		o.maxPodNetworks = DefaultMaxPodNetworks
	}
	return o, nil
}
