// Package seam lets the project's own tests and benchmarks reach into a cninetwork.Plugin where
// its API does not: run its plugins through a fake or tracing executor, let plugins inherit the
// whole environment, poll a network's CNI STATUS more often. Nothing here is API. Package
// cninetwork fills these functions in when it is initialized; each returns a cninetwork.Option
// as an any, which the caller converts (this package cannot name the type: cninetwork imports
// it).
package seam

import (
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

var (
	// Exec returns the option that runs a Plugin's plugin binaries through e instead of its
	// own executor (which kills a plugin's process group at its deadline, caps its output and
	// measures its CPU time).
	Exec func(e invoke.Exec) any
	// PluginEnv returns the option that lets plugins inherit the runtime's whole environment
	// instead of the CNI variables and PATH only.
	PluginEnv func(passthrough bool) any
	// StatusInterval returns the option that sets how often the background poller asks a CNI
	// 1.1 default network for its STATUS.
	StatusInterval func(d time.Duration) any
)
