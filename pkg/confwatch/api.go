package confwatch

// This file holds the package's exported surface; the confwatch work fills in the bodies.

import (
	"context"
	"errors"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

// Defaults.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultMaxDebounce = 1 * time.Second
	DefaultResync      = time.Minute
)

// Sentinel errors wrapped by Snapshot.Err.
var (
	// ErrNotReady: no default network.
	ErrNotReady = errors.New("cni config uninitialized")
	// ErrPinnedNotFound: the pinned network name has no valid config.
	ErrPinnedNotFound = errors.New("pinned network not found")
)

// Option configures a Watcher.
type Option func(*options)

type options struct {
	binDirs     []string
	networkName string
	debounce    time.Duration
	maxDebounce time.Duration
	resync      time.Duration
	exec        invoke.Exec
}

// WithBinDirs sets the directories searched for plugin binaries.
func WithBinDirs(dirs ...string) Option { return func(o *options) { o.binDirs = dirs } }

// WithNetworkName pins the default network by name.
func WithNetworkName(name string) Option { return func(o *options) { o.networkName = name } }

// WithDebounce sets the quiet window after the last event before a rescan, and the upper bound
// on how long a constant stream of events can delay it.
func WithDebounce(quiet, max time.Duration) Option {
	return func(o *options) { o.debounce, o.maxDebounce = quiet, max }
}

// WithResync sets the period of the safety-net full rescan; zero or less disables it.
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithExec replaces libcni's plugin executor used to validate plugins; for tests.
func WithExec(e invoke.Exec) Option { return func(o *options) { o.exec = e } }

// Watcher watches a CNI configuration directory. Its methods are safe for concurrent use.
type Watcher struct {
	dir  string
	opts options
}

// New returns a Watcher for dir. It does no I/O.
func New(dir string, opts ...Option) (*Watcher, error) { panic("unimplemented") }

// Scan rescans the directory synchronously, publishes the result and returns it.
func (w *Watcher) Scan(ctx context.Context) *Snapshot { panic("unimplemented") }

// Run scans once, then watches until ctx ends. It is the only goroutine the Watcher owns and
// returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error { panic("unimplemented") }

// Snapshot returns the current snapshot; never nil (generation 0 before the first scan).
func (w *Watcher) Snapshot() *Snapshot { panic("unimplemented") }

// Wait blocks until a snapshot with a generation above after is published, or ctx ends.
func (w *Watcher) Wait(ctx context.Context, after uint64) (*Snapshot, error) { panic("unimplemented") }
