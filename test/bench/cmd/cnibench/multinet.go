//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/netns"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
)

// multinetTarget is the set-up latency of a pod on three networks the project aims for, as a
// ratio to the slowest of the three networks' set-up alone (p50, one caller).
const multinetTarget = 1.15

// mnNetwork is one network of the multinet scenario: a bridge with host-local, on this
// machine only.
type mnNetwork struct{ name, bridge, subnet string }

var mnNetworks = []mnNetwork{
	{"cnibmn-a", "cnibmn0", "10.196.0.0/16"},
	{"cnibmn-b", "cnibmn1", "10.195.0.0/16"},
	{"cnibmn-c", "cnibmn2", "10.194.0.0/16"},
}

// multinetCmd measures, with one caller, the set-up latency of a pod on each of three bridge
// networks alone, on all three at once (the first as the default network, the others as
// extra networks), and on the three one after another, and writes a markdown table.
func multinetCmd(ctx context.Context, args []string) (retErr error) {
	fs := flag.NewFlagSet("multinet", flag.ContinueOnError)
	binDir := fs.String("cni-bin-dir", "_output/cni/bin", "directory of the real CNI plugins")
	pods := fs.Int("pods", 50, "pods measured per variant")
	md := fs.String("markdown", "", "write the markdown table here too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pods < 1 {
		return fmt.Errorf("multinet: -pods %d: want at least 1", *pods)
	}
	root, err := os.MkdirTemp("", "cnibench-multinet-")
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, mnCleanup(root)) }()
	if err := mnCleanupBridges(); err != nil { // an interrupted earlier run's
		return err
	}

	// The "all" Plugin sees the three networks, the first as its default; each "alone" Plugin
	// sees one network only, its default.
	ipam := filepath.Join(root, "ipam")
	allDir := filepath.Join(root, "all")
	var plugins []*cninetwork.Plugin
	defer func() {
		for _, p := range plugins {
			_ = p.Close()
		}
	}()
	newPlugin := func(dir string, nets ...int) (*cninetwork.Plugin, error) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		for i, n := range nets {
			file := filepath.Join(dir, fmt.Sprintf("%02d-%s.conflist", 10+i, mnNetworks[n].name))
			if err := os.WriteFile(file, mnConfList(mnNetworks[n], ipam), 0o600); err != nil {
				return nil, err
			}
		}
		p, err := cninetwork.New(cninetwork.WithConfDir(dir), cninetwork.WithBinDirs(*binDir),
			cninetwork.WithCacheDir(filepath.Join(dir, "cache")), cninetwork.WithRegisterer(prometheus.NewRegistry()))
		if err != nil {
			return nil, err
		}
		plugins = append(plugins, p)
		if err := p.Run(ctx); err != nil {
			return nil, err
		}
		wait, cancel := context.WithTimeout(ctx, readyWait)
		defer cancel()
		for p.Status(wait) != nil {
			select {
			case <-wait.Done():
				return nil, fmt.Errorf("multinet: Plugin of %s not ready after %s", dir, readyWait)
			case <-time.After(10 * time.Millisecond):
			}
		}
		return p, nil
	}
	all, err := newPlugin(allDir, 0, 1, 2)
	if err != nil {
		return fmt.Errorf("multinet: %w", err)
	}
	alone := make([]*cninetwork.Plugin, 3)
	for i := range alone {
		if alone[i], err = newPlugin(filepath.Join(root, "alone", mnNetworks[i].name), i); err != nil {
			return fmt.Errorf("multinet: %w", err)
		}
	}

	// One netns per variant, reused: each teardown leaves it empty again.
	nsDir := filepath.Join(root, "netns")
	if err := os.MkdirAll(nsDir, 0o700); err != nil {
		return err
	}
	ns := make([]string, 4)
	for i := range ns {
		if ns[i], err = netns.Create(nsDir, fmt.Sprintf("mn%d", i)); err != nil {
			return fmt.Errorf("multinet: %w", err)
		}
		defer func() { retErr = errors.Join(retErr, netns.Remove(ns[i])) }()
	}

	seq := 0
	var cpu [5]time.Duration // the plugins' CPU time over each variant's set-ups
	variant := 0
	setUpTearDown := func(p *cninetwork.Plugin, nsPath string, extra ...string) (time.Duration, error) {
		seq++
		pod := &cninetwork.Pod{SandboxID: fmt.Sprintf("%064x", seq), Name: fmt.Sprintf("mn-%d", seq), Namespace: "bench", UID: fmt.Sprintf("uid-%d", seq), NetNS: nsPath}
		for _, x := range extra {
			pod.ExtraNetworks = append(pod.ExtraNetworks, cninetwork.NetworkAttachment{Network: x})
		}
		cpu0 := childrenCPU()
		start := time.Now()
		_, err := p.SetUpPod(ctx, pod)
		d := time.Since(start)
		cpu[variant] += childrenCPU() - cpu0
		if err != nil {
			return 0, fmt.Errorf("multinet: set up pod %s: %w", pod.Name, err)
		}
		if err := p.TearDownPod(ctx, pod); err != nil {
			return 0, fmt.Errorf("multinet: tear down pod %s: %w", pod.Name, err)
		}
		return d, nil
	}

	// The variants run interleaved, pod after pod, so the machine's drift hits each alike;
	// teardowns are not timed.
	lat := make([][]time.Duration, 5)
	for range *pods {
		for i := range 3 {
			variant = i
			d, err := setUpTearDown(alone[i], ns[i])
			if err != nil {
				return err
			}
			lat[i] = append(lat[i], d)
		}
		variant = 3
		d, err := setUpTearDown(all, ns[3], mnNetworks[1].name, mnNetworks[2].name)
		if err != nil {
			return err
		}
		lat[3] = append(lat[3], d)
		// One after another: the three single-network set-ups back to back, timed as one.
		var sum time.Duration
		variant = 4
		for i := range 3 {
			d, err := setUpTearDown(alone[i], ns[i])
			if err != nil {
				return err
			}
			sum += d
		}
		lat[4] = append(lat[4], sum)
	}
	if err := mnCheckLeft(root); err != nil {
		return err
	}
	out := mnMarkdown(*pods, lat, cpu)
	fmt.Print(out)
	if *md != "" {
		return os.WriteFile(*md, []byte(out), 0o644)
	}
	return nil
}

// readyWait bounds the wait for a Plugin's first ready status.
const readyWait = 30 * time.Second

func mnConfList(n mnNetwork, ipam string) []byte {
	return fmt.Appendf(nil, `{"cniVersion":"1.0.0","name":%q,"plugins":[
  {"type":"bridge","bridge":%q,"isGateway":true,
   "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}}]}
`, n.name, n.bridge, n.subnet, ipam)
}

// mnCheckLeft fails when, after every teardown, a libcni cache entry of a Plugin's cache dir
// under root or a host-local reservation is left.
func mnCheckLeft(root string) error {
	caches, _ := filepath.Glob(filepath.Join(root, "*", "cache", "results", "*"))
	more, _ := filepath.Glob(filepath.Join(root, "alone", "*", "cache", "results", "*"))
	left := append(caches, more...)
	for _, n := range mnNetworks {
		ents, err := os.ReadDir(filepath.Join(root, "ipam", n.name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
				left = append(left, filepath.Join(n.name, e.Name()))
			}
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("multinet: left after teardown: %v", left)
	}
	return nil
}

func mnCleanupBridges() error {
	var errs []error
	for _, n := range mnNetworks {
		l, err := netlink.LinkByName(n.bridge)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			continue
		}
		if err == nil {
			err = netlink.LinkDel(l)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("multinet: bridge %s: %w", n.bridge, err))
		}
	}
	return errors.Join(errs...)
}

func mnCleanup(root string) error {
	return errors.Join(mnCleanupBridges(), os.RemoveAll(root))
}

// childrenCPU returns the user and system CPU time of this process's reaped children: the
// plugins it ran.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mnMarkdown(pods int, lat [][]time.Duration, cpu [5]time.Duration) string {
	p50 := func(i int) time.Duration { return runner.Percentile(lat[i], 50) }
	p99 := func(i int) time.Duration { return runner.Percentile(lat[i], 99) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	var b strings.Builder
	b.WriteString("## A pod on three networks (real plugins, one caller)\n\n")
	fmt.Fprintf(&b, "%d pods per row, interleaved. Three bridge + host-local networks; \"one after another\" is the three single-network set-ups back to back, timed as one. Set-up only (teardowns untimed).\n\n", pods)
	b.WriteString("| pod on | p50 | p99 | plugins' CPU per set-up |\n|---|--:|--:|--:|\n")
	rows := []string{"network A alone (default)", "network B alone", "network C alone", "A + B + C at once (annotation path)", "A, B, C one after another"}
	for i, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r, ms(p50(i)), ms(p99(i)), ms(cpu[i]/time.Duration(pods)))
	}
	slowest := max(p50(0), p50(1), p50(2))
	ratio := float64(p50(3)) / float64(slowest)
	verdict := "met"
	if ratio > multinetTarget {
		verdict = "missed"
	}
	fmt.Fprintf(&b, "\n| ratio (p50) | value |\n|---|--:|\n")
	fmt.Fprintf(&b, "| at once / slowest alone (target ≤ %.2f) | %.2f (%s) |\n", multinetTarget, ratio, verdict)
	fmt.Fprintf(&b, "| one after another / at once | %.2f |\n", float64(p50(4))/float64(p50(3)))
	// However the chains overlap, at once cannot beat the plugins' CPU time spread over
	// every CPU of the machine.
	cores := runtime.NumCPU()
	floor := max(slowest, cpu[3]/time.Duration(pods)/time.Duration(cores))
	fmt.Fprintf(&b, "| CPU floor of at once on %d CPUs / slowest alone | %.2f |\n\n", cores, float64(floor)/float64(slowest))
	return b.String()
}
