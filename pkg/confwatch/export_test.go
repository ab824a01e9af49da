package confwatch

import "time"

// Options for the package's tests only: the Watcher's timings are its own business.

// WithDebounce sets the quiet window after the last event before a rescan, and the upper bound
// on how long a constant stream of events can delay it. A zero max means
// max(defaultMaxDebounce, quiet).
func WithDebounce(quiet, max time.Duration) Option {
	return func(o *options) { o.debounce, o.maxDebounce = quiet, max }
}

// WithResync sets the period of the safety-net full rescan; zero or less disables it.
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithValidateTimeout caps how long validating one network may take.
func WithValidateTimeout(d time.Duration) Option {
	return func(o *options) { o.validateTimeout = d }
}
