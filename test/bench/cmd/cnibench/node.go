//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Targets of one node at 1,000 pods.
const (
	nodeRestartTarget    = 5 * time.Second
	nodeListTarget       = 5 * time.Millisecond
	nodeStatusTarget     = time.Millisecond
	nodeRSSTargetKiB     = 40 * 1024
	nodeRestartWaitLimit = time.Minute
)

// nodeResult is what nodeCmd measures of one `cnishim serve` holding Sandboxes live sandboxes.
type nodeResult struct {
	Sandboxes int
	// Serving and NetworkReady run from the SIGKILL of the server to the restarted server
	// answering Version, and to its Status reporting NetworkReady true.
	Serving, NetworkReady time.Duration
	// ReadyAfter is how many of the sandboxes ListPodSandbox lists READY after the restart.
	ReadyAfter int
	// Single-call latencies through the CRI gRPC client, before the restart.
	List, Status, StatusVerbose []time.Duration
	// The server's CPU time per call of each kind (all its threads), which the machine's
	// other load does not inflate as it does the tail latencies.
	ListCPU, StatusCPU, StatusVerboseCPU time.Duration
	// Load is the 1-minute load average after the latency loops, and CPUs the CPUs online.
	Load string
	CPUs int
	// VmRSS and VmHWM of the server in KiB, with the sandboxes live, before the kill and after
	// the restart.
	RSSBefore, PeakBefore, RSSAfter, PeakAfter int64
}

// nodeCmd measures one node at many pods: a `cnishim serve` with live sandboxes is SIGKILLed
// and restarted on the same state dir, its list and status calls are timed, and its memory is
// read before and after the restart. It prints a markdown table with the targets, and fails
// if a sandbox is not READY after the restart.
func nodeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cnibench node", flag.ContinueOnError)
	cnishimBin := fs.String("cnishim", "", "cnishim binary (required)")
	servePlugins := fs.String("serve-plugins", "", "directory holding the cnitest plugin and host-local (required)")
	n := fs.Int("sandboxes", 1000, "live sandboxes")
	listCalls := fs.Int("list-calls", 200, "timed ListPodSandbox calls")
	statusCalls := fs.Int("status-calls", 1000, "timed PodSandboxStatus calls of each kind (plain, verbose)")
	settle := fs.Duration("settle", 2*time.Second, "wait before each memory reading")
	verbosity := fs.String("v", "", "the server's log verbosity (cnishim serve -v)")
	serverLog := fs.String("server-log", "", "file to write the server's log to (every start)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cnishimBin == "" || *servePlugins == "" || *n < 1 || *listCalls < 1 || *statusCalls < 1 {
		return fmt.Errorf("%w: want -cnishim, -serve-plugins and positive counts", flag.ErrHelp)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the server creates network namespaces")
	}
	var extra []string
	if *verbosity != "" {
		extra = append(extra, "--v", *verbosity)
	}
	r, err := measureNode(ctx, *cnishimBin, *servePlugins, extra, *n, *listCalls, *statusCalls, *settle, *serverLog)
	if r != nil {
		fmt.Print(nodeMarkdown(r, *listCalls, *statusCalls))
	}
	return err
}

// measureNode runs the measurement; the result is nil when nothing was measured, and partial
// when a later step failed.
func measureNode(ctx context.Context, cnishim, plugins string, extra []string, n, listCalls, statusCalls int, settle time.Duration, serverLog string) (_ *nodeResult, retErr error) {
	node, err := startServeNode(ctx, cnishim, plugins, extra)
	if err != nil {
		return nil, err
	}
	defer func() {
		retErr = errors.Join(retErr, node.close(ctx))
		if serverLog != "" {
			retErr = errors.Join(retErr, os.WriteFile(serverLog, []byte(node.stderr.String()), 0o644))
		}
	}()
	fmt.Fprintf(os.Stderr, "cnibench node: running %d sandboxes\n", n)
	if err := node.runSandboxes(ctx, n); err != nil {
		return nil, err
	}
	r := &nodeResult{Sandboxes: n}
	time.Sleep(settle)
	if r.RSSBefore, r.PeakBefore, err = node.memory(); err != nil {
		return nil, err
	}

	fmt.Fprintf(os.Stderr, "cnibench node: timing %d list and 2×%d status calls\n", listCalls, statusCalls)
	rng := rand.New(rand.NewPCG(1, 2))
	list := func(ctx context.Context) error {
		resp, err := node.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err == nil && len(resp.GetItems()) != n {
			err = fmt.Errorf("ListPodSandbox listed %d sandboxes, want %d", len(resp.GetItems()), n)
		}
		return err
	}
	podStatus := func(verbose bool) func(context.Context) error {
		return func(ctx context.Context) error {
			id := node.ids[rng.IntN(len(node.ids))]
			resp, err := node.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: verbose})
			if err == nil && resp.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
				err = fmt.Errorf("sandbox %s is %s", id, resp.GetStatus().GetState())
			}
			return err
		}
	}
	for _, t := range []struct {
		calls int
		call  func(context.Context) error
		lat   *[]time.Duration
		cpu   *time.Duration
	}{
		{listCalls, list, &r.List, &r.ListCPU},
		{statusCalls, podStatus(false), &r.Status, &r.StatusCPU},
		{statusCalls, podStatus(true), &r.StatusVerbose, &r.StatusVerboseCPU},
	} {
		cpu0, err := procCPU(node.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		if *t.lat, err = timeCalls(ctx, t.calls, t.call); err != nil {
			return r, err
		}
		cpu1, err := procCPU(node.cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		*t.cpu = (cpu1 - cpu0) / time.Duration(t.calls+warmCalls)
	}
	r.CPUs = runtime.NumCPU()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Load, _, _ = strings.Cut(string(b), " ")
	}

	fmt.Fprintf(os.Stderr, "cnibench node: SIGKILL and restart\n")
	start := time.Now()
	if err := node.kill(); err != nil {
		return r, err
	}
	if err := node.start(ctx); err != nil {
		return r, err
	}
	if r.Serving, r.NetworkReady, err = waitRestarted(ctx, node.rt, start); err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(node.stderr.String(), 20))
	}
	resp, err := node.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return r, fmt.Errorf("list after restart: %w", err)
	}
	ready := map[string]bool{}
	for _, sb := range resp.GetItems() {
		if sb.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready[sb.GetId()] = true
		}
	}
	for _, id := range node.ids {
		if ready[id] {
			r.ReadyAfter++
		}
	}
	time.Sleep(settle)
	if r.RSSAfter, r.PeakAfter, err = node.memory(); err != nil {
		return r, err
	}
	if r.ReadyAfter != n {
		return r, fmt.Errorf("after the restart %d of %d sandboxes are READY", r.ReadyAfter, n)
	}
	return r, nil
}

// warmCalls is how many untimed calls timeCalls makes first.
const warmCalls = 20

// timeCalls makes warmCalls untimed calls, then n timed ones, one after the other.
func timeCalls(ctx context.Context, n int, call func(context.Context) error) ([]time.Duration, error) {
	for range warmCalls {
		if err := call(ctx); err != nil {
			return nil, err
		}
	}
	ds := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		if err := call(ctx); err != nil {
			return ds, err
		}
		ds = append(ds, time.Since(t))
	}
	return ds, nil
}

// procCPU is the CPU time process pid's threads have run, from /proc/<pid>/task/*/schedstat
// (nanoseconds; a thread that has exited no longer counts).
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("cpu of process %d: no tasks (%v)", pid, err)
	}
	var sum time.Duration
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		ns, _, _ := strings.Cut(string(b), " ")
		v, err := strconv.ParseInt(ns, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		sum += time.Duration(v)
	}
	return sum, nil
}

// waitRestarted waits for a restarted server to answer Version, then for its Status to
// report NetworkReady, and returns both durations since start.
func waitRestarted(ctx context.Context, rt runtimeapi.RuntimeServiceClient, start time.Time) (serving, ready time.Duration, _ error) {
	ctx, cancel := context.WithTimeout(ctx, nodeRestartWaitLimit)
	defer cancel()
	for {
		// WaitForReady: the call waits for the connection instead of failing while the
		// socket does not answer; the client redials every few milliseconds.
		_, err := rt.Version(ctx, &runtimeapi.VersionRequest{}, grpc.WaitForReady(true))
		if err == nil {
			serving = time.Since(start)
			break
		}
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("restarted server not serving after %s: %w", nodeRestartWaitLimit, err)
		}
		time.Sleep(time.Millisecond)
	}
	for {
		resp, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err == nil {
			for _, c := range resp.GetStatus().GetConditions() {
				if c.GetType() == runtimeapi.NetworkReady && c.GetStatus() {
					return serving, time.Since(start), nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return serving, 0, fmt.Errorf("restarted server's network not ready after %s (last error %v)", nodeRestartWaitLimit, err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// nodeMarkdown is the report's section on one node at many pods.
func nodeMarkdown(r *nodeResult, listCalls, statusCalls int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## One node at %d pods\n\n", r.Sandboxes)
	fmt.Fprintf(&b, "`cnishim serve` holding %d live sandboxes (each a network namespace on the network of the memory figure: cnitest delegating to the real host-local). "+
		"Restart: the server is SIGKILLed and started again with the same flags and state dir; the times run from the SIGKILL to the CRI socket answering `Version`, and to `Status` reporting NetworkReady true "+
		"(polled every 2 ms). Latencies are of single calls through the CRI gRPC client on the unix socket, one at a time, before the restart: "+
		"%d `ListPodSandbox` (all sandboxes, no filter) and %d `PodSandboxStatus` of random sandboxes, plain and verbose. "+
		"Memory is the server's VmRSS and VmHWM from `/proc/<pid>/status` with the sandboxes live, 2 s after the last call, before the SIGKILL and after the restart.\n\n",
		r.Sandboxes, listCalls, statusCalls)
	fmt.Fprintf(&b, "| figure | p50 | server CPU per call | measured | target | |\n|---|--:|--:|--:|--:|---|\n")
	dur := func(name string, d, target time.Duration) {
		fmt.Fprintf(&b, "| %s | – | – | %s | ≤ %s | %s |\n", name, fmtDur(d), fmtDur(target), metMiss(d <= target && d > 0))
	}
	lat := func(name string, ds []time.Duration, cpu, target time.Duration) {
		if len(ds) == 0 {
			fmt.Fprintf(&b, "| %s | – | – | – | ≤ %s | not measured |\n", name, fmtDur(target))
			return
		}
		p99 := runner.Percentile(ds, 99)
		cpuCell := "–"
		if cpu > 0 {
			cpuCell = fmtDur(cpu)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s (p99) | ≤ %s | %s |\n", name, fmtDur(runner.Percentile(ds, 50)), cpuCell, fmtDur(p99), fmtDur(target), metMiss(p99 <= target))
	}
	mem := func(name string, kib int64) {
		if kib == 0 {
			fmt.Fprintf(&b, "| %s | – | – | – | ≤ 40 MiB | not measured |\n", name)
			return
		}
		fmt.Fprintf(&b, "| %s | – | – | %.1f MiB | ≤ 40 MiB | %s |\n", name, float64(kib)/1024, metMiss(kib <= nodeRSSTargetKiB))
	}
	if r.Serving > 0 {
		dur("restart: SIGKILL to serving (`Version` answers)", r.Serving, nodeRestartTarget)
		dur("restart: SIGKILL to `Status` NetworkReady", r.NetworkReady, nodeRestartTarget)
	} else {
		fmt.Fprintf(&b, "| restart | – | – | – | ≤ %s | not measured |\n", fmtDur(nodeRestartTarget))
	}
	lat(fmt.Sprintf("`ListPodSandbox`, %d sandboxes", r.Sandboxes), r.List, r.ListCPU, nodeListTarget)
	lat("`PodSandboxStatus`", r.Status, r.StatusCPU, nodeStatusTarget)
	lat("`PodSandboxStatus`, verbose", r.StatusVerbose, r.StatusVerboseCPU, nodeStatusTarget)
	mem("RSS (VmRSS) before the restart", r.RSSBefore)
	mem("peak RSS (VmHWM) before the restart", r.PeakBefore)
	mem("RSS (VmRSS) after the restart", r.RSSAfter)
	mem("peak RSS (VmHWM) after the restart", r.PeakAfter)
	if r.Load != "" {
		fmt.Fprintf(&b, "\nLoad average (1 min) after the latency loops: %s on %d CPUs. The tail latencies include the client's own work and any wait for a CPU; the server's CPU per call (its threads' run time from `/proc/<pid>/task/*/schedstat` over the loop, warm-up calls included) is what the server itself spends.\n", r.Load, r.CPUs)
	}
	if r.Serving > 0 {
		fmt.Fprintf(&b, "\nAfter the restart %d of %d sandboxes are listed READY (the run fails otherwise).\n", r.ReadyAfter, r.Sandboxes)
	}
	fmt.Fprintln(&b)
	return b.String()
}

func metMiss(ok bool) string {
	if ok {
		return "MET"
	}
	return "**MISS**"
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
