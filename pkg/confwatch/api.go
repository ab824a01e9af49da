package confwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnishim/cnishim/internal/lib/pluginenv"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// Defaults.
const (
	// DefaultConfDir is the conventional CNI configuration directory.
	DefaultConfDir = "/etc/cni/net.d"
	// DefaultBinDir is the conventional CNI plugin directory, used when no WithBinDirs is given.
	DefaultBinDir = "/opt/cni/bin"
	// defaultDebounce is the quiet window after the last event before a rescan.
	defaultDebounce = 100 * time.Millisecond
	// defaultMaxDebounce bounds how long a constant stream of events can delay a rescan.
	defaultMaxDebounce = 1 * time.Second
	// defaultResync is the period of the safety-net full rescan.
	defaultResync = time.Minute
	// defaultValidateTimeout caps the time validating one network may take (its plugins'
	// VERSION execs together).
	defaultValidateTimeout = 10 * time.Second
	// maxConfigSize is the largest configuration file the Watcher reads; a larger file is
	// skipped with an error naming it.
	maxConfigSize = 1 << 20
)

// Sentinel errors wrapped by Snapshot.Err.
var (
	// ErrNotReady means there is no default network. Every non-nil Snapshot.Err wraps it.
	ErrNotReady = errors.New("network plugin not ready")
	// errPinnedNotFound means the pinned network name has no valid config.
	errPinnedNotFound = errors.New("pinned network not found")
)

// Option configures a Watcher.
type Option func(*options)

type options struct {
	binDirs         []string
	networkName     string
	debounce        time.Duration
	maxDebounce     time.Duration
	resync          time.Duration
	validateTimeout time.Duration
	exec            invoke.Exec
}

// WithBinDirs sets the directories searched for plugin binaries, in order. Without it the
// Watcher searches DefaultBinDir.
func WithBinDirs(dirs ...string) Option {
	return func(o *options) { o.binDirs = append([]string(nil), dirs...) }
}

// WithNetworkName pins the default network by name: the Snapshot has no Default (and its Err
// says the pinned network was not found) while no valid config has that name. Empty means no pin.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithExec replaces libcni's plugin executor used to validate plugins (find the binary, run
// VERSION). Nil means libcni's default executor, running each plugin with only the
// CNI_* variables and PATH of its environment, so the caller's own environment (credentials,
// proxies, tokens) never reaches a plugin. A given executor gets the whole environment.
func WithExec(e invoke.Exec) Option { return func(o *options) { o.exec = e } }

// Watcher watches a CNI configuration directory and publishes immutable Snapshots of it.
// Its methods are safe for concurrent use. Scan and Run's rescans are serialized: at most one
// scan runs at a time.
type Watcher struct {
	dir  string
	opts options

	// cni validates plugin lists; its executor memoizes VERSION answers (see memoExec).
	cni  *libcni.CNIConfig
	memo *memoExec

	// now is the clock used for the hold rule of Scan; tests replace it.
	now func() time.Time

	// scanMu serializes scans. It guards everything in scanState.
	scanMu sync.Mutex
	st     scanState

	// pubMu guards snap and changed. snap is replaced, never modified, on each publish;
	// changed is closed (and replaced) on each publish to wake Wait.
	pubMu   sync.Mutex
	snap    *Snapshot
	changed chan struct{}

	// current mirrors snap for lock-free reads by Snapshot.
	current atomic.Pointer[Snapshot]

	// running is set while Run runs; Run refuses to run twice at once.
	running atomic.Bool
	// kick wakes Run's loop when a Scan called by someone else left a file on hold, so the
	// loop schedules the follow-up rescan. Capacity one; sends never block.
	kick chan struct{}
	// injectErr, when set by a test before Run, is read like the fsnotify error channel.
	injectErr chan error
	// scanned, when set by a test, receives the result of every scan Run performs. A send
	// blocks while the channel is full (until Run's context ends), so tests give it a buffer.
	scanned chan scanResult
}

// New returns a Watcher for dir. It applies all options, then checks them, so their order
// does not matter. It starts no goroutine and touches no file; a relative dir or bin dir is
// made absolute against the working directory.
func New(dir string, opts ...Option) (*Watcher, error) {
	if dir == "" {
		return nil, errors.New("confwatch: empty configuration directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("confwatch: configuration directory %q: %w", dir, err)
	}
	o := options{
		binDirs:     []string{DefaultBinDir},
		debounce:    defaultDebounce,
		resync:      defaultResync,
		maxDebounce: 0,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.binDirs) == 0 {
		return nil, errors.New("confwatch: no plugin bin dirs")
	}
	for i, d := range o.binDirs {
		if d == "" {
			return nil, errors.New("confwatch: empty plugin bin dir")
		}
		a, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("confwatch: plugin bin dir %q: %w", d, err)
		}
		o.binDirs[i] = a
	}
	if o.debounce <= 0 {
		return nil, fmt.Errorf("confwatch: debounce quiet window %v is not positive", o.debounce)
	}
	if o.maxDebounce == 0 {
		o.maxDebounce = max(defaultMaxDebounce, o.debounce)
	}
	if o.maxDebounce < o.debounce {
		return nil, fmt.Errorf("confwatch: debounce bound %v is below the quiet window %v", o.maxDebounce, o.debounce)
	}
	if o.validateTimeout <= 0 {
		o.validateTimeout = defaultValidateTimeout
	}
	inner := o.exec
	if inner == nil {
		inner = pluginenv.Exec{Exec: &invoke.DefaultExec{
			RawExec:       &invoke.RawExec{Stderr: io.Discard},
			PluginDecoder: version.PluginDecoder{},
		}}
	}
	memo := newMemoExec(inner)
	w := &Watcher{
		dir:     abs,
		opts:    o,
		cni:     libcni.NewCNIConfig(o.binDirs, memo),
		memo:    memo,
		now:     time.Now,
		st:      newScanState(),
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	w.snap = &Snapshot{
		Dir: abs,
		Err: &notReadyError{msg: fmt.Sprintf("no valid CNI network config in %s: not scanned yet", abs)},
	}
	w.current.Store(w.snap)
	return w, nil
}

// BinDirs returns the directories the Watcher looks for plugin binaries in, made absolute, in
// order. The caller may modify the returned slice.
func (w *Watcher) BinDirs() []string { return slices.Clone(w.opts.binDirs) }

// Snapshot returns the current snapshot; never nil (generation 0 before the first scan). It
// does not block on a running scan.
func (w *Watcher) Snapshot() *Snapshot { return w.current.Load() }

// Wait blocks until a snapshot with a generation above after is published, and returns it, or
// until ctx ends, and returns ctx's error. Wait(ctx, 0) returns as soon as the first scan has
// published. To follow every change, pass the generation of the snapshot last returned.
func (w *Watcher) Wait(ctx context.Context, after uint64) (*Snapshot, error) {
	for {
		w.pubMu.Lock()
		s, ch := w.snap, w.changed
		w.pubMu.Unlock()
		if s.Generation > after {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// publish makes s the current snapshot and wakes waiters. Called with scanMu held.
func (w *Watcher) publish(s *Snapshot) {
	w.pubMu.Lock()
	w.snap = s
	w.current.Store(s)
	close(w.changed)
	w.changed = make(chan struct{})
	w.pubMu.Unlock()
}
