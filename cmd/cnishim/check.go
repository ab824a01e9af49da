//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cnishim/cnishim/internal/runtime/criserver"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

const checkSynopsis = `Asks the server on --listen to run CNI CHECK on every network of a ready pod sandbox, with the
configuration and arguments it was set up with: each network's plugins say whether what they
made for the pod (interfaces, addresses, routes, rules) is still as they left it. Networks whose
cniVersion predates CHECK pass. It prints "ok" or exits 1 with the plugins' error, naming the
network that failed.`

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var listen, id string
	var timeout time.Duration
	fs := newFlagSet("check", stderr, checkSynopsis)
	fs.StringVar(&listen, "listen", defaultListen, "CRI endpoint of the server")
	fs.StringVar(&id, "pod-sandbox-id", "", "the sandbox's ID, or a unique prefix of it (required)")
	fs.DurationVar(&timeout, "timeout", cninetwork.DefaultOperationTimeout, "cap on the whole check")
	logs := addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("%w: --pod-sandbox-id is required", errUsage)
	}
	ctx, conn, closeConn, err := dialListen(ctx, listen, timeout, logs)
	if err != nil {
		return err
	}
	defer closeConn()
	if err := criserver.CallCheck(ctx, conn, id); err != nil {
		return fmt.Errorf("server %s: %w", listen, err)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
