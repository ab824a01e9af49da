package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/cnishim/cnishim/internal/lib/admission"
	"github.com/cnishim/cnishim/internal/lib/keylock"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/klog/v2"
)

// cniRunner is the part of libcni the Plugin uses.
type cniRunner interface {
	AddNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	CheckNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
	DelNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
	GetNetworkListCachedResult(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	GetCachedAttachments(containerID string) ([]*libcni.NetworkAttachment, error)
	GetStatusNetworkList(ctx context.Context, list *libcni.NetworkConfigList) error
}

var _ cniRunner = (*libcni.CNIConfig)(nil)

// snapshotSource is the part of confwatch.Watcher the Plugin uses.
type snapshotSource interface {
	Scan(ctx context.Context) *confwatch.Snapshot
	Run(ctx context.Context) error
	Snapshot() *confwatch.Snapshot
	Wait(ctx context.Context, after uint64) (*confwatch.Snapshot, error)
}

var _ snapshotSource = (*confwatch.Watcher)(nil)

// Plugin is the CNI network plugin. Its methods are safe for concurrent use.
//
// Operations on one pod sandbox are serialized; operations on different sandboxes run in
// parallel. Each operation reads the configuration snapshot once and uses it throughout, so a
// configuration reload never waits for a plugin, and no lock is held while plugins run other
// than the sandbox's own (and, for ADD, a share of the GC gate).
type Plugin struct {
	opts   options
	source snapshotSource
	cni    cniRunner
	// exec runs every plugin, libcni's and the Plugin's own (GC's, see gcPlugins).
	exec    invoke.Exec
	metrics *metrics
	// records holds what this Plugin made, from before each set-up's first plugin runs until
	// its attachments are deleted: what teardown and GC go by.
	records recordStore
	// lanes bounds the plugin chains in flight, per kind of operation.
	lanes *admission.Set
	// adaptiveAdd is set when the ADD bound follows the chains (AdmissionLimits.AdaptiveAdd).
	adaptiveAdd bool
	// loopbackList is the built-in network WithLoopbackPlugin attaches pods to.
	loopbackList *libcni.NetworkConfigList

	// locks serializes operations per sandbox.
	locks keylock.Map
	// gate keeps GC's plugin phase apart from ADD chains (see gcGate).
	gate gcGate

	podCIDRs  atomic.Pointer[[]*net.IPNet]
	netStatus atomic.Pointer[networkStatus]

	// statusMu guards pods; it is held only to read or write the map.
	statusMu sync.Mutex
	pods     map[string]*PodNetworkStatus

	// listsMu guards lists, the libcni lists to attach with, by network digest; see listFor.
	listsMu sync.Mutex
	lists   map[string]*libcni.NetworkConfigList

	// runMu guards the fields below; Run and Close hold it.
	runMu   sync.Mutex
	running bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// networkStatus is the last CNI STATUS answer of a network.
type networkStatus struct {
	network string
	digest  string
	err     error
}

// New builds a Plugin. It does no I/O and starts nothing; call Run.
func New(opts ...Option) (*Plugin, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	inner := o.exec
	procs := &procSet{}
	if inner == nil {
		inner = newDefaultExec(procs)
	}
	exec := &pluginExec{inner: inner, passEnv: o.passEnv}

	// Everything that can fail without side effects comes first, so a failed New leaves the
	// registerer as it found it.
	lo, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"` + loopbackNetworkName + `","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		return nil, fmt.Errorf("loopback network: %w", err)
	}
	source := o.source
	if source == nil {
		wopts := []confwatch.Option{
			confwatch.WithBinDirs(o.binDirs...),
			confwatch.WithExec(exec),
		}
		if o.networkName != "" {
			wopts = append(wopts, confwatch.WithNetworkName(o.networkName))
		}
		w, err := confwatch.New(o.confDir, wopts...)
		if err != nil {
			return nil, err
		}
		source = w
		o.binDirs = w.BinDirs() // the watcher's rules for bin dirs are the Plugin's
	}

	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	limits := admission.DefaultLimits()
	if o.admission != nil {
		limits = admission.Limits(*o.admission)
	}
	var am *admission.Metrics
	if o.registerer != nil {
		if am, err = admission.NewMetrics(o.registerer); err != nil {
			m.unregister(o.registerer)
			return nil, err
		}
	}
	p := &Plugin{
		opts:         o,
		source:       source,
		cni:          libcni.NewCNIConfigWithCacheDir(o.binDirs, o.cacheDir, exec),
		exec:         exec,
		metrics:      m,
		records:      recordStore{dir: o.stateDir},
		lanes:        admission.NewSet(limits, am),
		adaptiveAdd:  limits.AdaptiveAdd && limits.Add > 0,
		loopbackList: lo,
		pods:         make(map[string]*PodNetworkStatus),
	}
	p.podCIDRs.Store(&[]*net.IPNet{})
	if o.exec == nil {
		p.lanes.AddBound.SetChainProcs(procs.list)
	}
	return p, nil
}

// errClosed is returned by Run after Close.
var errClosed = errors.New("cninetwork: plugin closed")

// Run scans the configuration directory once, synchronously, then starts the watcher and the
// background STATUS poller and returns. They run until ctx ends or Close is called; Close
// waits for them. Run may be called once; a second call returns an error.
func (p *Plugin) Run(ctx context.Context) error {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.closed {
		return errClosed
	}
	if p.running {
		return errors.New("cninetwork: Run called twice")
	}
	p.running = true
	logger := klog.FromContext(ctx)

	runCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	snap := p.source.Scan(runCtx)
	logger.V(2).Info("Loaded CNI configuration", "generation", snap.Generation, "network", defaultName(snap), "err", snap.Err)

	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		_ = p.source.Run(runCtx) // returns when runCtx ends
	}()
	if p.adaptiveAdd {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.probeAdd(runCtx)
		}()
	}
	go func() {
		defer p.wg.Done()
		p.pollStatus(runCtx)
	}()
	return nil
}

// Close stops everything Run started and waits for it. It does not wait for operations in
// flight, which end with their callers' contexts. Close is idempotent.
func (p *Plugin) Close() error {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	p.closed = true
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	return nil
}

// Snapshot returns the current configuration snapshot. Callers must not modify it.
func (p *Plugin) Snapshot() *confwatch.Snapshot { return p.source.Snapshot() }

// Status returns nil when a default network is ready; otherwise an error wrapping ErrNotReady
// that says why: the configuration directory's problem, or, for a network of cniVersion 1.1.0
// or later, its plugins' last CNI STATUS answer. It never touches the disk or execs a plugin:
// STATUS is polled in the background by Run.
func (p *Plugin) Status(ctx context.Context) error {
	snap := p.source.Snapshot()
	if snap == nil || snap.Generation == 0 {
		return fmt.Errorf("%w: CNI configuration not loaded yet", ErrNotReady)
	}
	if snap.Default == nil {
		if snap.Err == nil {
			return fmt.Errorf("%w: no default network in %s", ErrNotReady, snap.Dir)
		}
		if errors.Is(snap.Err, ErrNotReady) {
			return snap.Err // as confwatch's snapshots do
		}
		return fmt.Errorf("%w: %w", ErrNotReady, snap.Err)
	}
	if st := p.netStatus.Load(); st != nil && st.err != nil &&
		st.network == snap.Default.Name && st.digest == snap.Default.Digest {
		return fmt.Errorf("%w: network %q (%s): %w", ErrNotReady, snap.Default.Name, snap.Default.File, st.err)
	}
	return nil
}

// SetPodCIDRs sets the node's pod CIDRs, passed to plugins as the ipRanges capability arg
// (one range set per IP family). Each argument may hold several CIDRs separated by commas. An
// invalid CIDR is an error and changes nothing. Operations already running keep the CIDRs they
// started with.
func (p *Plugin) SetPodCIDRs(cidrs ...string) error {
	parsed, err := parsePodCIDRs(cidrs)
	if err != nil {
		return err
	}
	p.podCIDRs.Store(&parsed)
	return nil
}

func defaultName(s *confwatch.Snapshot) string {
	if s == nil || s.Default == nil {
		return ""
	}
	return s.Default.Name
}
