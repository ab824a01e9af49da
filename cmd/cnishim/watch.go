//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cnishim/cnishim/pkg/confwatch"
)

const watchSynopsis = `Watches the CNI configuration directory as the server does and prints a line each time the
chosen network changes: another file or name, new content, or not ready (with the reason).
The first line is the current state. Runs until interrupted (SIGINT or SIGTERM).`

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cni cniFlags
	fs := newFlagSet("watch", stderr, watchSynopsis)
	cni.register(fs, false)
	logs := addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx = logs.context(ctx)
	w, err := confwatch.New(cni.confDir, cni.watcherOptions()...)
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()

	var gen uint64
	last := ""
	for {
		snap, err := w.Wait(ctx, gen)
		if err != nil {
			break // ctx ended
		}
		gen = snap.Generation
		key, line := describeDefault(snap)
		if key == last {
			continue
		}
		last = key
		fmt.Fprintf(stdout, "%s %s\n", time.Now().Format(time.RFC3339), line)
	}
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// describeDefault returns a key that changes exactly when the chosen network does, and the
// line that says what it is now.
func describeDefault(s *confwatch.Snapshot) (key, line string) {
	d := s.Default
	if d == nil {
		reason := "no default network"
		if s.Err != nil {
			reason = s.Err.Error()
		}
		return "not-ready\x00" + reason, fmt.Sprintf("not ready: %s (%d skipped)", reason, len(s.Skipped))
	}
	return strings.Join([]string{d.File, d.Name, d.Digest}, "\x00"),
		fmt.Sprintf("default network %q from %s (cniVersion %s, plugins %s)",
			d.Name, d.File, d.CNIVersion, strings.Join(d.PluginTypes, " -> "))
}
