//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/bench/internal/fakeexec"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/prometheus/client_golang/prometheus"
)

// memResult is one memory measurement: a fresh process holding a Plugin with Sandboxes pods
// set up (fake exec: no plugin runs, libcni's cache is written for real).
type memResult struct {
	Sandboxes  int   `json:"sandboxes"`
	RSSKiB     int64 `json:"rssKiB"`
	PeakKiB    int64 `json:"peakKiB"`
	HeapKiB    int64 `json:"heapKiB"`
	CacheFiles int   `json:"cacheFiles"`
}

// memoryCmd measures the Plugin's memory with 0 and with many live sandboxes, each in a
// fresh worker process, and prints a markdown table.
func memoryCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cnibench memory", flag.ContinueOnError)
	counts := fs.String("sandboxes", "0,1000", "comma-separated sandbox counts")
	cnishimBin := fs.String("cnishim", "", "cnishim binary: also measure `cnishim serve` with the largest count of live sandboxes")
	servePlugins := fs.String("serve-plugins", "", "directory holding the cnitest plugin and host-local, for the `cnishim serve` measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var b strings.Builder
	verdict := ""
	fmt.Fprintf(&b, "## Memory\n\n")
	largest := 0
	for _, f := range strings.Split(*counts, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			largest = max(largest, n)
		}
	}
	if *cnishimBin != "" {
		ms, err := measureServe(ctx, *cnishimBin, *servePlugins, largest, 2*time.Second)
		if err != nil {
			return fmt.Errorf("cnishim serve: %w", err)
		}
		fmt.Fprintf(&b, "`cnishim serve`, driven through its CRI endpoint: each sandbox is a RunPodSandbox with its own network namespace, on a network of the project's cnitest plugin delegating to the real host-local (an address and a libcni cache entry per sandbox, no veth, so the figure is the server's own). RSS (VmRSS) and peak (VmHWM) of the server process from `/proc/<pid>/status`, 2 s after the last call, without forcing a GC.\n\n")
		fmt.Fprintf(&b, "| live sandboxes | RSS | peak RSS |\n|--:|--:|--:|\n")
		for _, m := range ms {
			fmt.Fprintf(&b, "| %d | %.1f MiB | %.1f MiB |\n", m.Sandboxes, float64(m.RSS)/1024, float64(m.Peak)/1024)
			if m.Sandboxes == 1000 {
				verdict = rssVerdict(m.RSS)
			}
		}
		fmt.Fprintf(&b, "\n")
	}
	fmt.Fprintf(&b, "The library alone. What is measured: a fresh process that embeds cnishim's `cninetwork.Plugin` (watcher, STATUS poller, Prometheus metrics on a registry) and sets N pods up through it with a fake plugin executor (no plugin process runs; libcni's cache files are written for real, one per pod), then, after a GC, reads its resident set (VmRSS) and peak (VmHWM) from `/proc/self/status`. This is the library's share of `cnishim serve`; the server adds its gRPC CRI endpoint and sandbox records.\n\n")
	fmt.Fprintf(&b, "| live sandboxes | RSS | peak RSS | Go heap in use | libcni cache files |\n|--:|--:|--:|--:|--:|\n")
	for _, f := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return fmt.Errorf("-sandboxes %q: want counts like 0,1000", *counts)
		}
		cmd := exec.CommandContext(ctx, self, "memory-worker", "-sandboxes", strconv.Itoa(n))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("memory worker (%d sandboxes): %w", n, err)
		}
		var r memResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return fmt.Errorf("memory worker (%d sandboxes): %w", n, err)
		}
		fmt.Fprintf(&b, "| %d | %.1f MiB | %.1f MiB | %.1f MiB | %d |\n", r.Sandboxes,
			float64(r.RSSKiB)/1024, float64(r.PeakKiB)/1024, float64(r.HeapKiB)/1024, r.CacheFiles)
		if n == 1000 && *cnishimBin == "" {
			verdict = rssVerdict(r.RSSKiB) + " (the library in-process; `cnishim serve` not measured)"
		}
	}
	if verdict != "" {
		fmt.Fprintf(&b, "\nTarget, `cnishim serve` with 1,000 live sandboxes ≤ 40 MiB RSS: %s.\n", verdict)
	}
	fmt.Fprintln(&b)
	fmt.Print(b.String())
	return nil
}

func memoryWorker(ctx context.Context, args []string) (retErr error) {
	fs := flag.NewFlagSet("cnibench memory-worker", flag.ContinueOnError)
	n := fs.Int("sandboxes", 0, "pods to set up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "cnibench-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	confDir, cacheDir, binDir := filepath.Join(root, "net.d"), filepath.Join(root, "cache"), filepath.Join(root, "bin")
	if err := fakeexec.InstallStubs(binDir, "bridge", "host-local", "portmap"); err != nil {
		return err
	}
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return err
	}
	conf := `{"cniVersion":"1.1.0","name":"cnibench","plugins":[{"type":"bridge","bridge":"cnibench0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.199.0.0/16"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	if err := os.WriteFile(filepath.Join(confDir, "10-cnibench.conflist"), []byte(conf), 0o600); err != nil {
		return err
	}
	p, err := cninetwork.New(
		cninetwork.WithConfDir(confDir),
		cninetwork.WithBinDirs(binDir),
		cninetwork.WithCacheDir(cacheDir),
		seam.Exec(&fakeexec.Exec{}).(cninetwork.Option),
		cninetwork.WithoutLoopback(),
		cninetwork.WithRegisterer(prometheus.NewRegistry()),
	)
	if err != nil {
		return err
	}
	if err := p.Run(ctx); err != nil {
		return err
	}
	defer func() {
		if err := p.Close(); retErr == nil {
			retErr = err
		}
	}()
	if err := p.Status(ctx); err != nil {
		return err
	}
	for i := range *n {
		pod := &cninetwork.Pod{
			SandboxID: fmt.Sprintf("%064x", i+1),
			Name:      fmt.Sprintf("mem-%d", i),
			Namespace: "cnibench",
			UID:       fmt.Sprintf("%032x", i+1),
			// A real namespace path; with loopback off and a fake executor nothing enters it.
			NetNS: "/proc/self/ns/net",
		}
		if _, err := p.SetUpPod(ctx, pod); err != nil {
			return err
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(100 * time.Millisecond)
	var r memResult
	r.Sandboxes = *n
	r.RSSKiB, r.PeakKiB, err = host.Memory()
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.HeapKiB = int64(ms.HeapInuse / 1024)
	if es, err := os.ReadDir(filepath.Join(cacheDir, "results")); err == nil {
		r.CacheFiles = len(es)
	}
	return json.NewEncoder(os.Stdout).Encode(&r)
}

func rssVerdict(kib int64) string {
	rss := float64(kib) / 1024
	if rss <= 40 {
		return fmt.Sprintf("%.1f MiB, PASS", rss)
	}
	return fmt.Sprintf("%.1f MiB, **MISS** by %.0f%%", rss, (rss/40-1)*100)
}
