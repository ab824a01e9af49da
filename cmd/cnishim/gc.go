//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cnishim/cnishim/internal/criserver"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

const gcSynopsis = `Runs one CNI garbage collection pass: plugins release what they hold for sandboxes outside
the valid set (IPs, rules, interfaces), and stale libcni cache entries are removed.

By default the server on --listen runs the pass itself with its ready sandboxes as the valid
set, holding new RunPodSandbox calls back meanwhile, so no pod being set up loses its network.
With --sandbox-ids, the pass runs here, against the CNI flags' directories, with that list as
the valid set; it refuses to while a server answers on --listen.`

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cni cniFlags
	var listen, ids string
	var timeout time.Duration
	fs := newFlagSet("gc", stderr, gcSynopsis)
	cni.register(fs, true)
	fs.StringVar(&listen, "listen", defaultListen, "CRI endpoint of the server")
	fs.StringVar(&ids, "sandbox-ids", "", "comma-separated valid sandbox IDs: run the pass here instead of in the server (may be empty: nothing is valid)")
	fs.DurationVar(&timeout, "timeout", cninetwork.DefaultOperationTimeout, "cap on the whole pass")
	addKlogFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	local := false
	fs.Visit(func(f *flag.Flag) { local = local || f.Name == "sandbox-ids" })
	sock, err := unixPath(listen)
	if err != nil {
		return err
	}
	ctx = klog.NewContext(ctx, klog.Background())
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
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
	valid := splitList(ids)
	plugin, err := cninetwork.New(cni.pluginOptions()...)
	if err != nil {
		return err
	}
	if err := plugin.Run(ctx); err != nil {
		return err
	}
	gcErr := plugin.GC(ctx, valid)
	if err := plugin.Close(); err != nil && gcErr == nil {
		gcErr = err
	}
	if gcErr != nil {
		return gcErr
	}
	fmt.Fprintf(stdout, "GC done: %d valid sandboxes\n", len(valid))
	return nil
}
