package confwatch

import "context"

// Run scans once, then watches until ctx ends. It is the only goroutine the Watcher owns and
// returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error { panic("unimplemented") }
