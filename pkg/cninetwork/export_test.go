package cninetwork

import (
	"time"

	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/containernetworking/cni/pkg/invoke"
)

// The test seams of internal/lib/seam, typed for the package's tests.

// WithExec runs plugins through e.
func WithExec(e invoke.Exec) Option { return seam.Exec(e).(Option) }

// WithPluginEnv lets plugins inherit the whole environment.
func WithPluginEnv(passthrough bool) Option { return seam.PluginEnv(passthrough).(Option) }

// WithStatusInterval sets the STATUS poll interval.
func WithStatusInterval(d time.Duration) Option { return seam.StatusInterval(d).(Option) }

// withGCGateWait sets how long a GC waits for the set-ups before it (no other test needs it).
func withGCGateWait(d time.Duration) Option { return func(o *options) { o.gcGateWait = d } }

// withLoopbackInProcess brings lo up in-process, the default that newTestPlugin turns off.
func withLoopbackInProcess() Option { return func(o *options) { o.loopback = loopbackInProcess } }
