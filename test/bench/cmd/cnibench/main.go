//go:build linux

// Command cnibench is the side-by-side benchmark of cnishim's Plugin, containerd's go-cni
// and raw libcni over the real CNI plugins in real network namespaces. hack/bench.sh runs it
// as root.
//
//	cnibench [run flags]          measure, print the markdown report, write results and plots
//	cnibench report -in FILE      rebuild the report and plots from a results file
//	cnibench memory [-sandboxes]  measure the Plugin's RSS with live sandboxes (fake exec)
//	cnibench node -cnishim BIN    `cnishim serve` with live sandboxes: SIGKILL and restart, list and status latency, RSS
//	cnibench micro-report -in FILE  summarise go test -bench output of test/bench/micro
//	cnibench multinet [-pods] [-breakdown]  pods on three networks at once against one at a time
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"k8s.io/klog/v2"
)

func main() {
	quietKlog()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string) error {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "worker":
		return runner.Work(ctx, os.Stdin, os.Stdout)
	case "report":
		return reportCmd(args[1:])
	case "memory":
		return memoryCmd(ctx, args[1:])
	case "node":
		return nodeCmd(ctx, args[1:])
	case "micro-report":
		return microReportCmd(args[1:])
	case "multinet":
		return multinetCmd(ctx, args[1:])
	case "memory-worker":
		return memoryWorker(ctx, args[1:])
	}
	return runCmd(ctx, args)
}

// quietKlog stops klog (which the library logs through) from writing into the benchmark's
// output; the benchmark reports errors itself.
func quietKlog() {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	_ = fs.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
}
