//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cnishim/cnishim/internal/runtime/criserver"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const gcSynopsis = `Runs one CNI garbage collection pass: the networks of sandboxes outside the valid set are
deleted, and plugins of CNI 1.1 networks release what no remaining attachment holds (IPs,
rules, interfaces). Only what the server recorded as its own is deleted: attachments other
runtimes made in the shared CNI cache dir are left alone, and so are those on networks with
"disableGC".

By default the server on --listen runs the pass itself with its sandboxes as the valid set,
without holding pod set-ups back. With --sandbox-ids, the pass runs here, against the CNI
flags' directories and the records in --state-dir, with that list as the valid set; it refuses
to while a server holds the state dir.`

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cni cniFlags
	var listen, ids, stateDir string
	var timeout time.Duration
	fs := newFlagSet("gc", stderr, gcSynopsis)
	cni.register(fs, true)
	fs.StringVar(&listen, "listen", defaultListen, "CRI endpoint of the server")
	fs.StringVar(&stateDir, "state-dir", defaultStateDir, "with --sandbox-ids: the server's state dir, whose records say what it made")
	fs.StringVar(&ids, "sandbox-ids", "", "comma-separated valid sandbox IDs: run the pass here instead of in the server (may be empty: nothing is valid)")
	fs.DurationVar(&timeout, "timeout", cninetwork.DefaultOperationTimeout, "cap on the whole pass")
	logs := addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	local := false
	fs.Visit(func(f *flag.Flag) { local = local || f.Name == "sandbox-ids" })
	ctx, conn, closeConn, err := dialListen(ctx, listen, timeout, logs)
	if err != nil {
		return err
	}
	defer closeConn()
	if !local {
		valid, err := criserver.CallGC(ctx, conn)
		if err != nil {
			return fmt.Errorf("server %s: %w", listen, err)
		}
		fmt.Fprintf(stdout, "GC done by the server: %d valid sandboxes\n", len(valid))
		return nil
	}

	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	_, verr := runtimeapi.NewRuntimeServiceClient(conn).Version(pctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(false))
	pcancel()
	if verr == nil {
		return fmt.Errorf("a server answers on %s: a local pass would race with its set-ups; run cnishim gc without --sandbox-ids", listen)
	}
	if err := absPaths(&stateDir, &cni.confDir, &cni.binDirs, &cni.cacheDir); err != nil {
		return err
	}
	unlock, err := lockStateDir(stateDir, stateHolder{PID: os.Getpid(), Command: "cnishim gc"})
	if err != nil {
		return err
	}
	defer unlock()
	valid := splitList(ids)
	plugin, err := cninetwork.New(append(cni.pluginOptions(), cninetwork.WithStateDir(networkRecordsDir(stateDir)))...)
	if err != nil {
		return err
	}
	if err := plugin.Run(ctx); err != nil {
		return err
	}
	gcErr := plugin.GC(ctx, func(context.Context) ([]string, error) { return valid, nil })
	if err := plugin.Close(); err != nil && gcErr == nil {
		gcErr = err
	}
	if gcErr != nil {
		return gcErr
	}
	fmt.Fprintf(stdout, "GC done: %d valid sandboxes\n", len(valid))
	return nil
}
