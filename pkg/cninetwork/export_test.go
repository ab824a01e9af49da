package cninetwork

import (
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

// Options for the package's tests only (the project's other tests reach them through
// internal/lib/seam).

// WithExec runs plugins through e.
func WithExec(e invoke.Exec) Option { return func(o *options) { o.exec = e } }

// WithPluginEnv lets plugins inherit the whole environment.
func WithPluginEnv(passthrough bool) Option { return func(o *options) { o.passEnv = passthrough } }

// WithStatusInterval sets the STATUS poll interval.
func WithStatusInterval(d time.Duration) Option { return func(o *options) { o.statusInterval = d } }
