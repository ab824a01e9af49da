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

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
)

// multinetTarget is the set-up latency of a pod on three networks the project aims for, as a
// ratio to the slowest of the three networks' set-up alone (p50, one caller).
const multinetTarget = 1.15

// mnNetwork is one network of a multinet scenario, on this machine only.
type mnNetwork struct {
	name string
	// plugins is the conflist's plugins array, %[1]s standing for the host-local data dir;
	// alone, if set, replaces it when the network is a Plugin's only network (the default
	// network has no "ips" capability args, so a static address goes in the configuration).
	plugins, alone string
	// sel is how the pod selects the network when it is an extra network.
	sel cninetwork.NetworkSelection
}

// mnScenario is a pod on several networks, the first its default network.
type mnScenario struct {
	title, about string
	nets         []mnNetwork
	// links are the links the scenario's plugins or setUp create, removed before and after.
	links []string
	// setUp, if set, creates what the networks need (a macvlan parent) and returns its undo.
	setUp func() (func() error, error)
	// control marks a scenario measured only for the breakdown and the comparison of
	// executors.
	control bool
}

func mnBridge(name, bridge, subnet string) mnNetwork {
	return mnNetwork{name: name, plugins: fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,
   "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":"%%[1]s"}}`, bridge, subnet)}
}

// mnParent is the macvlan parent of the requirement's pod: one end of a veth pair the bench
// creates (this kernel has no dummy links), with nothing but its peer on the other end.
const mnParent = "cnibmv0"

var mnScenarios = []mnScenario{
	{
		title: "three bridge networks",
		about: "Three bridge + host-local networks (`cnibmn0` to `cnibmn2`).",
		nets: []mnNetwork{
			mnBridge("cnibmn-a", "cnibmn0", "10.196.0.0/16"),
			mnBridge("cnibmn-b", "cnibmn1", "10.195.0.0/16"),
			mnBridge("cnibmn-c", "cnibmn2", "10.194.0.0/16"),
		},
		links: []string{"cnibmn0", "cnibmn1", "cnibmn2"},
	},
	{
		title: "bridge + macvlan + static bridge",
		about: "The pod of the requirement: a bridge + host-local default network on eth0 (`cnibmr0`), " +
			"a macvlan + host-local network on net1 (bridge mode, its parent `" + mnParent + "` one end of a veth pair the bench makes), " +
			"and a second bridge (`cnibmr1`) with static IPAM on net2, its address asked for by the selection's `ips` " +
			"(alone, the same address is in the static IPAM's configuration).",
		nets: []mnNetwork{
			mnBridge("cnibmr-br", "cnibmr0", "10.193.0.0/16"),
			{name: "cnibmr-mv", plugins: fmt.Sprintf(`{"type":"macvlan","master":%q,"mode":"bridge",
   "ipam":{"type":"host-local","ranges":[[{"subnet":"10.192.0.0/16"}]],"dataDir":"%%[1]s"}}`, mnParent),
				sel: cninetwork.NetworkSelection{Interface: "net1"}},
			{name: "cnibmr-st", plugins: `{"type":"bridge","bridge":"cnibmr1","capabilities":{"ips":true},"ipam":{"type":"static"}}`,
				alone: `{"type":"bridge","bridge":"cnibmr1","ipam":{"type":"static","addresses":[{"address":"10.191.0.10/24"}]}}`,
				sel:   cninetwork.NetworkSelection{Interface: "net2", IPs: []string{"10.191.0.10/24"}}},
		},
		links: []string{"cnibmr0", "cnibmr1", mnParent},
		setUp: mnVethParent,
	},
	{
		title: "control: chains that make no link",
		about: "Three networks whose chain is host-local then static as plugins of their own: two plugin processes per chain " +
			"like a bridge chain (bridge runs host-local), but no link, no netns entry, no RTNL.",
		nets: []mnNetwork{
			mnNoLink("cnibmc-a", "10.190.0.0/16"),
			mnNoLink("cnibmc-b", "10.189.0.0/16"),
			mnNoLink("cnibmc-c", "10.188.0.0/16"),
		},
		control: true,
	},
}

func mnNoLink(name, subnet string) mnNetwork {
	return mnNetwork{name: name, plugins: fmt.Sprintf(`{"type":"host-local","ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":"%%[1]s"}},
  {"type":"static","ipam":{"type":"static","addresses":[{"address":"10.187.0.10/24"}]}}`, subnet)}
}

// mnVethParent creates the macvlan parent, up, and returns its removal.
func mnVethParent() (func() error, error) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: mnParent}, PeerName: mnParent + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", mnParent, err)
	}
	undo := func() error { return mnDeleteLinks([]string{mnParent}) }
	for _, name := range []string{mnParent, mnParent + "p"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("set %s up: %w", name, err), undo())
		}
	}
	return undo, nil
}

// multinetCmd measures, with one caller, the set-up latency of a pod on each network of a
// scenario alone, on all of them at once (the first as the default network, the others as
// extra networks), and on each alone one after another, for each scenario, and writes
// markdown tables; -breakdown adds where the wall time of the set-ups goes.
func multinetCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("multinet", flag.ContinueOnError)
	binDir := fs.String("cni-bin-dir", "_output/cni/bin", "directory of the real CNI plugins")
	pods := fs.Int("pods", 50, "pods measured per variant")
	md := fs.String("markdown", "", "write the markdown tables here too")
	breakdown := fs.Bool("breakdown", false, "trace every plugin run and add where the wall time goes (and the control scenario)")
	only := fs.String("scenario", "", "run only the scenarios whose title contains this")
	compare := fs.Bool("compare-exec", false, "add a row: the pod on all networks at once, its plugins run through libcni's executor (which reaps them in a blocking waitid) rather than the Plugin's own")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pods < 1 {
		return fmt.Errorf("multinet: -pods %d: want at least 1", *pods)
	}
	var b strings.Builder
	var cg *mnCgroup
	if *breakdown {
		var err error
		if cg, err = mnEnterCgroup(); err != nil {
			fmt.Fprintf(os.Stderr, "multinet: no CPU pressure in the breakdown: %v\n", err)
		}
		defer func() {
			if err := cg.leave(); err != nil {
				fmt.Fprintf(os.Stderr, "multinet: %v\n", err)
			}
		}()
	}
	for _, sc := range mnScenarios {
		if sc.control && !*breakdown && !*compare || !strings.Contains(sc.title, *only) {
			continue
		}
		var ex invoke.Exec
		if *breakdown {
			ex = &mnTracer{cg: cg}
		}
		r, err := sc.run(ctx, *binDir, *pods, ex, *compare)
		if err != nil {
			return err
		}
		out := r.markdown()
		if *breakdown {
			out += r.breakdownMarkdown()
		}
		fmt.Print(out)
		b.WriteString(out)
	}
	if *md != "" {
		return os.WriteFile(*md, []byte(b.String()), 0o644)
	}
	return nil
}

// mnResult is what a scenario's run measured: for each variant (each network alone, then at
// once, then one after another) the set-up latencies and the plugins' CPU time over them.
type mnResult struct {
	sc   *mnScenario
	pods int
	lat  [][]time.Duration
	cpu  []time.Duration
	// self is this process's CPU time over each variant's set-ups: the shim's own work
	// (forking, reaping and waiting for the plugins, records, libcni's cache).
	self []time.Duration
	// samples are the traced set-ups of each variant but the last, when traced.
	samples [][]mnSample
}

// run measures sc with pods pods per variant, the variants interleaved pod after pod so the
// machine's drift hits each alike; teardowns are not timed. ex, if not nil, runs the plugins;
// an *mnTracer traces every plugin run. compare adds the variant of the pod on all networks
// at once through libcni's executor.
func (sc *mnScenario) run(ctx context.Context, binDir string, pods int, ex invoke.Exec, compare bool) (_ *mnResult, retErr error) {
	tr, _ := ex.(*mnTracer)
	root, err := os.MkdirTemp("", "cnibench-multinet-")
	if err != nil {
		return nil, err
	}
	defer func() { retErr = errors.Join(retErr, mnDeleteLinks(sc.links), os.RemoveAll(root)) }()
	if err := mnDeleteLinks(sc.links); err != nil { // an interrupted earlier run's
		return nil, err
	}
	if sc.setUp != nil {
		undo, err := sc.setUp()
		if err != nil {
			return nil, fmt.Errorf("multinet: %w", err)
		}
		defer func() { retErr = errors.Join(retErr, undo()) }()
	}
	n := len(sc.nets)

	// The "all" Plugin sees every network, the first as its default; each "alone" Plugin
	// sees one network only, its default.
	ipam := filepath.Join(root, "ipam")
	var plugins []*cninetwork.Plugin
	defer func() {
		for _, p := range plugins {
			_ = p.Close()
		}
	}()
	newPlugin := func(dir string, ex invoke.Exec, alone bool, nets ...mnNetwork) (*cninetwork.Plugin, error) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		for i, nw := range nets {
			pl := nw.plugins
			if alone && nw.alone != "" {
				pl = nw.alone
			}
			file := filepath.Join(dir, fmt.Sprintf("%02d-%s.conflist", 10+i, nw.name))
			conf := fmt.Sprintf("{\"cniVersion\":\"1.0.0\",\"name\":%q,\"plugins\":[\n  %s]}\n", nw.name, strings.ReplaceAll(pl, "%[1]s", ipam))
			if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
				return nil, err
			}
		}
		opts := []cninetwork.Option{cninetwork.WithConfDir(dir), cninetwork.WithBinDirs(binDir),
			cninetwork.WithCacheDir(filepath.Join(dir, "cache")), cninetwork.WithRegisterer(prometheus.NewRegistry())}
		if ex != nil {
			opts = append(opts, seam.Exec(ex).(cninetwork.Option))
		}
		p, err := cninetwork.New(opts...)
		if err != nil {
			return nil, err
		}
		plugins = append(plugins, p)
		if err := p.Run(ctx); err != nil {
			return nil, err
		}
		wait, cancel := context.WithTimeout(ctx, readyWait)
		defer cancel()
		for err := p.Status(wait); err != nil; err = p.Status(wait) {
			select {
			case <-wait.Done():
				return nil, fmt.Errorf("multinet: Plugin of %s not ready after %s: %w", dir, readyWait, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		return p, nil
	}
	all, err := newPlugin(filepath.Join(root, "all"), ex, false, sc.nets...)
	if err != nil {
		return nil, fmt.Errorf("multinet: %w", err)
	}
	var allLibcni *cninetwork.Plugin
	if compare {
		libcniExec := &invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}}
		if allLibcni, err = newPlugin(filepath.Join(root, "all-libcni-exec"), libcniExec, false, sc.nets...); err != nil {
			return nil, fmt.Errorf("multinet: %w", err)
		}
	}
	alone := make([]*cninetwork.Plugin, n)
	for i := range alone {
		if alone[i], err = newPlugin(filepath.Join(root, "alone", sc.nets[i].name), ex, true, sc.nets[i]); err != nil {
			return nil, fmt.Errorf("multinet: %w", err)
		}
	}

	// One netns per variant, reused: each teardown leaves it empty again.
	nsDir := filepath.Join(root, "netns")
	if err := os.MkdirAll(nsDir, 0o700); err != nil {
		return nil, err
	}
	ns := make([]string, n+1)
	for i := range ns {
		if ns[i], err = netns.Create(nsDir, fmt.Sprintf("mn%d", i)); err != nil {
			return nil, fmt.Errorf("multinet: %w", err)
		}
		defer func() { retErr = errors.Join(retErr, netns.Remove(ns[i])) }()
	}
	var extra []cninetwork.NetworkSelection
	for _, nw := range sc.nets[1:] {
		x := nw.sel
		x.Name = nw.name
		extra = append(extra, x)
	}

	nv := n + 2
	if compare {
		nv++
	}
	r := &mnResult{sc: sc, pods: pods, lat: make([][]time.Duration, nv), cpu: make([]time.Duration, nv), self: make([]time.Duration, nv)}
	if tr != nil {
		r.samples = make([][]mnSample, n+1)
	}
	seq := 0
	setUpTearDown := func(variant int, p *cninetwork.Plugin, nsPath string, extra []cninetwork.NetworkSelection) (time.Duration, error) {
		seq++
		pod := &cninetwork.Pod{SandboxID: fmt.Sprintf("%064x", seq), Name: fmt.Sprintf("mn-%d", seq), Namespace: "bench", UID: fmt.Sprintf("uid-%d", seq), NetNS: nsPath, ExtraNetworks: extra}
		tr.begin()
		cpu0, self0 := childrenCPU(), selfCPU()
		start := time.Now()
		_, err := p.SetUpPod(ctx, pod)
		d := time.Since(start)
		r.cpu[variant] += childrenCPU() - cpu0
		r.self[variant] += selfCPU() - self0
		if s, ok := tr.end(start, d); ok && variant <= n {
			r.samples[variant] = append(r.samples[variant], s)
		}
		if err != nil {
			return 0, fmt.Errorf("multinet: %s: set up pod %s: %w", sc.title, pod.Name, err)
		}
		if err := p.TearDownPod(ctx, pod); err != nil {
			return 0, fmt.Errorf("multinet: %s: tear down pod %s: %w", sc.title, pod.Name, err)
		}
		return d, nil
	}
	for range pods {
		for i := range n {
			d, err := setUpTearDown(i, alone[i], ns[i], nil)
			if err != nil {
				return nil, err
			}
			r.lat[i] = append(r.lat[i], d)
		}
		d, err := setUpTearDown(n, all, ns[n], extra)
		if err != nil {
			return nil, err
		}
		r.lat[n] = append(r.lat[n], d)
		if compare {
			d, err := setUpTearDown(n+2, allLibcni, ns[n], extra)
			if err != nil {
				return nil, err
			}
			r.lat[n+2] = append(r.lat[n+2], d)
		}
		// One after another: the single-network set-ups back to back, timed as one.
		var sum time.Duration
		for i := range n {
			d, err := setUpTearDown(n+1, alone[i], ns[i], nil)
			if err != nil {
				return nil, err
			}
			sum += d
		}
		r.lat[n+1] = append(r.lat[n+1], sum)
	}
	if err := mnCheckLeft(root, sc.nets); err != nil {
		return nil, err
	}
	return r, nil
}

// readyWait bounds the wait for a Plugin's first ready status.
const readyWait = 30 * time.Second

// mnCheckLeft fails when, after every teardown, a libcni cache entry of a Plugin's cache dir
// under root or a host-local reservation is left.
func mnCheckLeft(root string, nets []mnNetwork) error {
	caches, _ := filepath.Glob(filepath.Join(root, "*", "cache", "results", "*"))
	more, _ := filepath.Glob(filepath.Join(root, "alone", "*", "cache", "results", "*"))
	left := append(caches, more...)
	for _, n := range nets {
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

// mnDeleteLinks deletes the links named, those that exist.
func mnDeleteLinks(names []string) error {
	var errs []error
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			continue
		}
		if err == nil {
			err = netlink.LinkDel(l)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("multinet: link %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
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

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// names returns the networks' short names: A, B, C...
func (r *mnResult) names() []string {
	out := make([]string, len(r.sc.nets))
	for i := range out {
		out[i] = string(rune('A' + i))
	}
	return out
}

func (r *mnResult) markdown() string {
	n := len(r.sc.nets)
	p50 := func(i int) time.Duration { return runner.Percentile(r.lat[i], 50) }
	p99 := func(i int) time.Duration { return runner.Percentile(r.lat[i], 99) }
	names := r.names()
	var b strings.Builder
	fmt.Fprintf(&b, "## A pod on %d networks: %s (real plugins, one caller)\n\n", n, r.sc.title)
	fmt.Fprintf(&b, "%d pods per row, interleaved. %s \"One after another\" is the single-network set-ups back to back, timed as one. Set-up only (teardowns untimed).\n\n", r.pods, r.sc.about)
	b.WriteString("| pod on | p50 | p99 | plugins' CPU per set-up | shim's CPU per set-up |\n|---|--:|--:|--:|--:|\n")
	rows := make([]string, 0, n+2)
	for i, nw := range r.sc.nets {
		what := ""
		if i == 0 {
			what = " (default)"
		}
		rows = append(rows, fmt.Sprintf("network %s `%s` alone%s", names[i], nw.name, what))
	}
	rows = append(rows, strings.Join(names, " + ")+" at once (annotation path)", strings.Join(names, ", ")+" one after another")
	if len(r.lat) > n+2 {
		rows = append(rows, strings.Join(names, " + ")+" at once, plugins reaped in a blocking waitid (libcni's executor)")
	}
	for i, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row, ms(p50(i)), ms(p99(i)), ms(r.cpu[i]/time.Duration(r.pods)), ms(r.self[i]/time.Duration(r.pods)))
	}
	slowest := slowestAlone(r.lat[:n])
	ratio := float64(p50(n)) / float64(slowest)
	verdict := "met"
	if ratio > multinetTarget {
		verdict = "missed"
	}
	fmt.Fprintf(&b, "\n| ratio (p50) | value |\n|---|--:|\n")
	fmt.Fprintf(&b, "| at once / slowest alone (target ≤ %.2f) | %.2f (%s) |\n", multinetTarget, ratio, verdict)
	fmt.Fprintf(&b, "| one after another / at once | %.2f |\n", float64(p50(n+1))/float64(p50(n)))
	if len(r.lat) > n+2 {
		fmt.Fprintf(&b, "| at once through libcni's executor / at once | %.2f |\n", float64(p50(n+2))/float64(p50(n)))
	}
	// However the chains overlap, at once cannot beat the CPU time it takes spread over every
	// CPU of the machine: the plugins', and the shim's own (it forks, waits for and reaps
	// every plugin process, and the kernel bills it for that).
	cores := time.Duration(runtime.NumCPU())
	perPod := func(d []time.Duration) time.Duration { return d[n] / time.Duration(r.pods) }
	floor := max(slowest, perPod(r.cpu)/cores)
	fmt.Fprintf(&b, "| CPU floor of at once on %d CPUs / slowest alone: plugins' CPU | %.2f |\n", cores, float64(floor)/float64(slowest))
	floor = max(slowest, (perPod(r.cpu)+perPod(r.self))/cores)
	fmt.Fprintf(&b, "| CPU floor of at once on %d CPUs / slowest alone: plugins' + shim's CPU | %.2f |\n\n", cores, float64(floor)/float64(slowest))
	return b.String()
}

// slowestAlone returns the largest p50 of the networks alone.
func slowestAlone(lat [][]time.Duration) time.Duration {
	var s time.Duration
	for _, l := range lat {
		s = max(s, runner.Percentile(l, 50))
	}
	return s
}
