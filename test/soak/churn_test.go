//go:build linux

package soak

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// Config churn sizes: the figures.
const (
	defaultChurnOps = 1000
	churnClients    = 8
	podsPerClient   = 3 // each client keeps this many pods up, so pods live across changes
	recreateEvery   = 50
)

// churnNet is one of the networks the writer installs. Each has its own name, bridge, subnet
// and host-local dataDir, so a pod's network can be told from its IP and its store.
type churnNet struct {
	name    string
	file    string // file name in the conf dir
	version string // cniVersion
	bridge  string
	subnet  *net.IPNet
	dataDir string
}

// conf returns the network's config at a revision: every write of the writer is new bytes,
// so a config a pod was set up with names the very write it came from.
func (c *churnNet) conf(rev int) []byte {
	return fmt.Appendf(nil, `{
  "cniVersion": %q,
  "name": %q,
  "soakRevision": %d,
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }
  ]
}
`, c.version, c.name, rev, c.bridge, c.dataDir, c.subnet.String())
}

// store returns the network's host-local store directory.
func (c *churnNet) store() string { return filepath.Join(c.dataDir, c.name) }

// knownConfigs is the set of config contents the writer wrote completely, with their network.
type knownConfigs struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *knownConfigs) add(b []byte, network string) {
	k.mu.Lock()
	k.m[string(b)] = network
	k.mu.Unlock()
}

func (k *knownConfigs) network(b []byte) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n, ok := k.m[string(b)]
	return n, ok
}

// span is a time interval.
type span struct{ from, to time.Time }

func (s span) overlaps(o span) bool { return !s.from.After(o.to) && !o.from.After(s.to) }

// windowLog holds the writer's marked windows: the times when no valid config may exist.
type windowLog struct {
	mu   sync.Mutex
	list []span
}

func (w *windowLog) add(s span) {
	w.mu.Lock()
	w.list = append(w.list, s)
	w.mu.Unlock()
}

func (w *windowLog) overlaps(s span) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.list {
		if x.overlaps(s) {
			return true
		}
	}
	return false
}

// writer changes the conf dir and the bin dir the ways installers do. Outside its marked
// windows, at least one complete valid config is in the conf dir at all times: network B's
// file is only ever replaced atomically (a ConfigMap-style symlink swap), so whatever happens
// to A's and C's files, B's is there.
type writer struct {
	t       *testing.T
	rng     *mrand.Rand
	confDir string
	binDir  string
	a, b, c *churnNet
	known   *knownConfigs
	windows *windowLog
	plugin  *cninetwork.Plugin

	rev      int
	last     map[string][]byte // the last bytes written of each network
	dataSeq  int
	dataDir  string // current "..<timestamp>" directory of the ConfigMap layout
	cPresent bool
	counts   map[string]int
}

// Kinds of change.
const (
	kindRename   = "rename into place"
	kindTruncate = "truncate and write in chunks"
	kindDataSwap = "..data symlink swap"
	kindFirst    = "file sorting first added or removed"
	kindBinary   = "plugin binary replaced"
	kindRecreate = "conf dir deleted and recreated"
)

// write returns the bytes of a new revision of n, and adds them to the known configs: a
// config in the known set counts as complete once the write below it returns, and no prefix of
// it is ever valid, so a reader that finds these exact bytes found them complete.
func (w *writer) write(n *churnNet) []byte {
	w.rev++
	data := n.conf(w.rev)
	w.known.add(data, n.name)
	w.last[n.name] = data
	return data
}

// install lays out a fresh conf dir: A as a plain file, B in the ConfigMap layout.
func (w *writer) install() error {
	if err := os.MkdirAll(w.confDir, 0o755); err != nil {
		return err
	}
	if err := w.renameInto(w.a); err != nil {
		return err
	}
	w.dataDir = ""
	if err := w.swapData(); err != nil {
		return err
	}
	return os.Symlink(filepath.Join("..data", w.b.file), filepath.Join(w.confDir, w.b.file))
}

// renameInto writes a new revision of n to a temporary name and renames it into place.
func (w *writer) renameInto(n *churnNet) error {
	data := w.write(n)
	tmp := filepath.Join(w.confDir, "."+n.file+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(w.confDir, n.file))
}

// truncateWrite rewrites n's file in place, as cp or a shell redirect does: truncated, then
// written in chunks with pauses, some longer than the watcher's quiet window. The last chunk
// always holds the closing brace, so no prefix is valid JSON.
func (w *writer) truncateWrite(ctx context.Context, n *churnNet) error {
	data := w.write(n)
	f, err := os.OpenFile(filepath.Join(w.confDir, n.file), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	last := bytes.LastIndexByte(data, '}')
	cuts := []int{0}
	for range 1 + w.rng.IntN(4) {
		cuts = append(cuts, w.rng.IntN(last))
	}
	slices.Sort(cuts)
	cuts = append(slices.Compact(cuts), len(data))
	for i := 1; i < len(cuts); i++ {
		if _, err := f.Write(data[cuts[i-1]:cuts[i]]); err != nil {
			return err
		}
		if i < len(cuts)-1 {
			d := time.Duration(w.rng.IntN(30)) * time.Millisecond
			if w.rng.IntN(8) == 0 {
				d = 150 * time.Millisecond
			}
			if err := framework.Pause(ctx, d); err != nil {
				return err
			}
		}
	}
	return f.Close()
}

// swapData publishes a new revision of B the way the kubelet updates a ConfigMap volume:
// files in a new "..<timestamp>" directory, a "..data_tmp" symlink to it renamed over
// "..data", then the old directory removed.
func (w *writer) swapData() error {
	w.dataSeq++
	dir := fmt.Sprintf("..2026_01_01_00_00_00.%09d", w.dataSeq)
	if err := os.Mkdir(filepath.Join(w.confDir, dir), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(w.confDir, dir, w.b.file), w.write(w.b), 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(w.confDir, "..data_tmp")
	if err := os.Symlink(dir, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(w.confDir, "..data")); err != nil {
		return err
	}
	old := w.dataDir
	w.dataDir = dir
	if old != "" {
		return os.RemoveAll(filepath.Join(w.confDir, old))
	}
	return nil
}

// toggleFirst adds C's file, which sorts before the others and so becomes the default (by
// rename or by an in-place write), or removes it.
func (w *writer) toggleFirst(ctx context.Context) error {
	if w.cPresent {
		w.cPresent = false
		return os.Remove(filepath.Join(w.confDir, w.c.file))
	}
	w.cPresent = true
	if w.rng.IntN(2) == 0 {
		return w.renameInto(w.c)
	}
	return w.truncateWrite(ctx, w.c)
}

// replaceBinary replaces a plugin binary as a package upgrade does: the new binary is copied
// to a temporary name by another process, then renamed over the old one.
func (w *writer) replaceBinary(ctx context.Context) error {
	name := []string{"bridge", "host-local"}[w.rng.IntN(2)]
	tmp := filepath.Join(w.binDir, "."+name+".new")
	if out, err := exec.CommandContext(ctx, "cp", filepath.Join(env.CNIBin, name), tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s: %w: %s", name, err, out)
	}
	return os.Rename(tmp, filepath.Join(w.binDir, name))
}

// recreate deletes the conf dir and makes it again, inside a marked window that ends once the
// plugin is ready with the new files loaded: the window covers the watcher catching up.
func (w *writer) recreate(ctx context.Context) error {
	from := time.Now()
	if err := os.RemoveAll(w.confDir); err != nil {
		return err
	}
	w.cPresent = false
	if err := framework.Pause(ctx, time.Duration(w.rng.IntN(50))*time.Millisecond); err != nil {
		return err
	}
	if err := w.install(); err != nil {
		return err
	}
	wantA := w.last[w.a.name]
	for {
		snap := w.plugin.Snapshot()
		if a := snap.Network(w.a.name); a != nil && bytes.Equal(a.Config.Bytes, wantA) && w.plugin.Status(ctx) == nil {
			break
		}
		if err := framework.Pause(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("the plugin never loaded the recreated conf dir: %w", err)
		}
	}
	w.windows.add(span{from, time.Now()})
	return nil
}

// run makes ops changes, one every few milliseconds.
func (w *writer) run(ctx context.Context, ops int) error {
	for i := range ops {
		var kind string
		var err error
		switch r := w.rng.IntN(100); {
		case i%recreateEvery == recreateEvery-1:
			kind, err = kindRecreate, w.recreate(ctx)
		case r < 25:
			kind, err = kindRename, w.renameInto(w.a)
		case r < 50:
			kind, err = kindTruncate, w.truncateWrite(ctx, w.a)
		case r < 70:
			kind, err = kindDataSwap, w.swapData()
		case r < 90:
			kind, err = kindFirst, w.toggleFirst(ctx)
		default:
			kind, err = kindBinary, w.replaceBinary(ctx)
		}
		if err != nil {
			return fmt.Errorf("change %d (%s): %w", i, kind, err)
		}
		w.counts[kind]++
		if err := framework.Pause(ctx, time.Duration(w.rng.IntN(40))*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// churnOp is one set-up a client made.
type churnOp struct {
	when    span
	err     error
	network string
}

// churnTally is what the clients and the readiness poller counted.
type churnTally struct {
	mu          sync.Mutex
	setups      []churnOp
	teardowns   int
	tdFailed    []string // teardown errors (must be none)
	wrongNet    []string // set-ups whose IP, store or cache disagree with their network
	wrongTear   []string // pods whose reservation outlived their teardown
	usedConfigs map[string]int
	perNetwork  map[string]int
}

func (c *churnTally) fail(list *[]string, format string, args ...any) {
	c.mu.Lock()
	*list = append(*list, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// churnNode is the churn test's piece of a node.
type churnNode struct {
	t        *testing.T
	dir      string
	confDir  string
	binDir   string
	cacheDir string
	nsDir    string
	nets     []*churnNet
	plugin   *cninetwork.Plugin
	cache    *libcni.CNIConfig
	tally    *churnTally
}

func (n *churnNode) netByName(name string) *churnNet {
	for _, c := range n.nets {
		if c.name == name {
			return c
		}
	}
	return nil
}

// holders returns the reservation files of every network's store that name the sandbox.
func (n *churnNode) holders(id string) []string {
	var out []string
	for _, c := range n.nets {
		files, _ := os.ReadDir(c.store())
		for _, f := range files {
			if net.ParseIP(f.Name()) == nil {
				continue
			}
			data, _ := os.ReadFile(filepath.Join(c.store(), f.Name()))
			if first, _, _ := strings.Cut(string(data), "\n"); strings.TrimSpace(first) == id {
				out = append(out, c.name+"/"+f.Name())
			}
		}
	}
	return out
}

// livePod is a pod a client has set up.
type livePod struct {
	pod     *cninetwork.Pod
	network string
}

// setUp sets a pod up in the netns and checks its network against the writer's configs.
func (n *churnNode) setUp(ctx context.Context, client, seq int, nsPath string) *livePod {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name := fmt.Sprintf("churn-%d-%d", client, seq)
	pod := &cninetwork.Pod{SandboxID: id, Name: name, Namespace: "soak", UID: "uid-" + name, NetNS: nsPath}
	from := time.Now()
	st, err := n.plugin.SetUpPod(ctx, pod)
	op := churnOp{when: span{from, time.Now()}, err: err}
	defer func() {
		n.tally.mu.Lock()
		n.tally.setups = append(n.tally.setups, op)
		n.tally.mu.Unlock()
	}()
	if err != nil {
		return nil
	}
	live := &livePod{pod: pod}
	if len(st.Attachments) != 1 || len(st.IPs) != 1 {
		n.tally.fail(&n.tally.wrongNet, "%s: status %+v, want one attachment with one IP", pod, st)
		return live
	}
	op.network = st.Attachments[0].Network
	live.network = op.network
	cn := n.netByName(op.network)
	switch {
	case cn == nil:
		n.tally.fail(&n.tally.wrongNet, "%s: set up on unknown network %q", pod, op.network)
		return live
	case !cn.subnet.Contains(st.IPs[0]):
		n.tally.fail(&n.tally.wrongNet, "%s: network %q gave IP %s outside %s", pod, op.network, st.IPs[0], cn.subnet)
	}
	if data, err := os.ReadFile(filepath.Join(cn.store(), st.IPs[0].String())); err != nil || !strings.HasPrefix(string(data), id) {
		n.tally.fail(&n.tally.wrongNet, "%s: no reservation of %s in the store of %q: %v", pod, st.IPs[0], op.network, err)
	}
	atts, err := n.cache.GetCachedAttachments(id)
	if err != nil || len(atts) != 1 || atts[0].Network != op.network {
		n.tally.fail(&n.tally.wrongNet, "%s: libcni cache holds %d attachments (%v), want one of %q", pod, len(atts), err, op.network)
		return live
	}
	n.tally.mu.Lock()
	n.tally.usedConfigs[string(atts[0].Config)]++
	n.tally.perNetwork[op.network]++
	n.tally.mu.Unlock()
	return live
}

// tearDown tears a pod down and checks that its reservation is gone from every store.
func (n *churnNode) tearDown(ctx context.Context, p *livePod) {
	err := n.plugin.TearDownPod(ctx, p.pod)
	n.tally.mu.Lock()
	n.tally.teardowns++
	n.tally.mu.Unlock()
	if err != nil {
		n.tally.fail(&n.tally.tdFailed, "%v", err)
		return
	}
	if h := n.holders(p.pod.SandboxID); len(h) > 0 {
		n.tally.fail(&n.tally.wrongTear, "%s (set up on %q): reservations left after teardown: %v", p.pod, p.network, h)
	}
	if atts, err := n.cache.GetCachedAttachments(p.pod.SandboxID); err != nil || len(atts) > 0 {
		n.tally.fail(&n.tally.wrongTear, "%s: cache after teardown: %d attachments, %v", p.pod, len(atts), err)
	}
}

// client sets pods up and tears them down until stop is closed, keeping podsPerClient pods up
// (tearing down the oldest before each set-up), then tears down what it has.
func (n *churnNode) client(ctx context.Context, c int, stop <-chan struct{}) {
	var slots [podsPerClient]struct {
		ns  string
		pod *livePod
	}
	for s := range slots {
		p, err := netns.Create(n.nsDir, fmt.Sprintf("c%d-%d", c, s))
		if err != nil {
			n.t.Error(err)
			return
		}
		slots[s].ns = p
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			for s := range slots {
				if slots[s].pod != nil {
					n.tearDown(ctx, slots[s].pod)
				}
			}
			return
		default:
		}
		s := &slots[i%podsPerClient]
		if s.pod != nil {
			n.tearDown(ctx, s.pod)
		}
		s.pod = n.setUp(ctx, c, i, s.ns)
	}
}

// readiness is what the poller saw.
type readiness struct {
	polls       int
	notReady    []span // each not-ready observation, from before Status to after it
	flips       int    // ready to not-ready transitions
	generations int
	switches    int      // changes of the default network's name
	unknown     []string // snapshot networks whose bytes the writer never wrote completely
}

// poll asks the plugin for its status in a tight loop until ctx ends, and checks every new
// snapshot's networks against the writer's complete configs.
func (n *churnNode) poll(ctx context.Context, known *knownConfigs) *readiness {
	r := &readiness{}
	var gen uint64
	var dflt string
	ready := true
	for ctx.Err() == nil {
		from := time.Now()
		err := n.plugin.Status(ctx)
		to := time.Now()
		if ctx.Err() != nil {
			break
		}
		r.polls++
		if err != nil {
			r.notReady = append(r.notReady, span{from, to})
			if ready {
				r.flips++
			}
		}
		ready = err == nil
		if snap := n.plugin.Snapshot(); snap.Generation != gen {
			gen = snap.Generation
			r.generations++
			if snap.Default != nil && snap.Default.Name != dflt {
				if dflt != "" {
					r.switches++
				}
				dflt = snap.Default.Name
			}
			for _, nw := range snap.Networks {
				if name, ok := known.network(nw.Config.Bytes); !ok || name != nw.Name {
					r.unknown = append(r.unknown, fmt.Sprintf("generation %d: network %q from %s: %q", gen, nw.Name, nw.File, nw.Config.Bytes))
				}
			}
		}
		_ = framework.Pause(ctx, 2*time.Millisecond)
	}
	return r
}

// While 8 clients set pods up and tear them down without pause, a writer changes the conf dir
// 1,000 times in the ways installers do (rename into place; truncate and write in chunks with
// pauses; a ConfigMap "..data" symlink swap; a file sorting first added and removed; a plugin
// binary replaced; the whole directory deleted and recreated). No set-up uses, and no snapshot
// holds, a config the writer had not finished writing; no set-up fails and readiness never
// drops while a valid config exists (outside the marked delete-and-recreate windows); every
// pod is torn down with its own network (its reservation leaves that network's store), and
// nothing is left at the end.
func TestConfigChurn(t *testing.T) {
	ops := framework.EnvInt(t, "CNISHIM_SOAK_CHURN_OPS", defaultChurnOps)
	seed := runSeed(t)
	rng := mrand.New(mrand.NewPCG(seed, 0xc0f))
	k := framework.ProcessSlot(8)
	dir := t.TempDir()
	n := &churnNode{
		t:        t,
		dir:      dir,
		confDir:  filepath.Join(dir, "etc", "net.d"),
		binDir:   filepath.Join(dir, "bin"),
		cacheDir: filepath.Join(dir, "cache"),
		nsDir:    filepath.Join(dir, "netns"),
		tally:    &churnTally{usedConfigs: map[string]int{}, perNetwork: map[string]int{}},
	}
	for i, spec := range []struct{ key, file, version string }{
		{"a", "10-a.conflist", "1.0.0"},
		{"b", "20-b.conflist", "1.1.0"},
		{"c", "05-c.conflist", "0.4.0"},
	} {
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.88.%d.0/24", 32+3*k+i)) // inside 10.88.32.0/19
		c := &churnNet{
			name:    "soak-churn-" + spec.key,
			file:    spec.file,
			version: spec.version,
			bridge:  fmt.Sprintf("cnisoak%d%s", k, spec.key),
			subnet:  subnet,
			dataDir: filepath.Join(dir, "ipam", spec.key),
		}
		framework.CheckNoBridge(t, c.bridge)
		t.Cleanup(func() { framework.DeleteBridge(t, c.bridge) })
		n.nets = append(n.nets, c)
	}
	copyPlugins(t, n.binDir, "bridge", "host-local")
	n.cache = libcni.NewCNIConfigWithCacheDir([]string{n.binDir}, n.cacheDir, nil)
	scope := leakcheck.Scope{
		HostLocalDirs: []string{n.nets[0].dataDir, n.nets[1].dataDir, n.nets[2].dataDir},
		CacheDir:      n.cacheDir,
		Bridges:       []string{n.nets[0].bridge, n.nets[1].bridge, n.nets[2].bridge},
	}
	before := leakcheck.Take(scope)
	t.Cleanup(func() {
		// Read what is left while the clients' namespaces still exist (removing one would
		// take a leaked veth with it), then remove them.
		after := leakcheck.Take(scope)
		for _, l := range leakcheck.Leaks(before, after) {
			t.Errorf("left behind: %s", l)
		}
		mounted, _ := netns.Mounted(n.nsDir)
		for _, p := range mounted {
			if err := netns.Remove(p); err != nil {
				t.Errorf("remove netns %s: %v", p, err)
			}
		}
		if procs, _ := framework.PluginProcs(n.binDir); len(procs) > 0 {
			t.Errorf("plugin processes left: %v", procs)
		}
	})

	known := &knownConfigs{m: map[string]string{}}
	w := &writer{
		t: t, rng: rng, confDir: n.confDir, binDir: n.binDir,
		a: n.nets[0], b: n.nets[1], c: n.nets[2],
		known: known, windows: &windowLog{}, counts: map[string]int{}, last: map[string][]byte{},
	}
	if err := w.install(); err != nil {
		t.Fatal(err)
	}
	p, err := cninetwork.New(
		cninetwork.WithConfDir(n.confDir),
		cninetwork.WithBinDirs(n.binDir),
		cninetwork.WithCacheDir(n.cacheDir),
		cninetwork.WithOperationTimeout(time.Minute),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute) // a bound for a hang, not a measure
	defer cancel()
	// The plugin logs each change of the default network; hundreds of them would drown the
	// test's output, and the poller counts them instead.
	quiet := ktesting.NewLogger(ktesting.NopTL{}, ktesting.NewConfig(ktesting.Verbosity(0)))
	pctx, stopPlugin := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), quiet))
	if err := p.Run(pctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopPlugin()
		if err := p.Close(); err != nil {
			t.Errorf("close plugin: %v", err)
		}
	}()
	n.plugin, w.plugin = p, p
	if err := p.Status(ctx); err != nil {
		t.Fatalf("not ready after the first scan: %v", err)
	}

	start := time.Now()
	pollCtx, stopPoll := context.WithCancel(ctx)
	var rd *readiness
	var pollDone sync.WaitGroup
	pollDone.Go(func() { rd = n.poll(pollCtx, known) })
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for c := range churnClients {
		clients.Go(func() { n.client(ctx, c, stop) })
	}
	werr := w.run(ctx, ops)
	close(stop)
	clients.Wait()
	stopPoll()
	pollDone.Wait()
	took := time.Since(start)
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}

	// Figures.
	tl := n.tally
	var failedIn, failedOut int
	var failures []string
	for _, op := range tl.setups {
		if op.err == nil {
			continue
		}
		if w.windows.overlaps(op.when) {
			failedIn++
			continue
		}
		failedOut++
		if len(failures) < 5 {
			failures = append(failures, op.err.Error())
		}
	}
	halfWritten := 0
	for cfg, uses := range tl.usedConfigs {
		list, err := libcni.ConfListFromBytes([]byte(cfg))
		if name, ok := known.network([]byte(cfg)); !ok || err != nil || list.Name != name {
			halfWritten += uses
			t.Errorf("%d set-ups used a config the writer never wrote completely: %q", uses, cfg)
		}
	}
	var notReadyIn, flapsOut int
	for _, s := range rd.notReady {
		if w.windows.overlaps(s) {
			notReadyIn++
		} else {
			flapsOut++
		}
	}
	var kinds []string
	for _, kind := range []string{kindRename, kindTruncate, kindDataSwap, kindFirst, kindBinary, kindRecreate} {
		kinds = append(kinds, fmt.Sprintf("%d %s", w.counts[kind], kind))
	}
	changes := 0
	for _, c := range w.counts {
		changes += c
	}
	var perNet []string
	for _, c := range n.nets {
		perNet = append(perNet, fmt.Sprintf("%s %d", c.name, tl.perNetwork[c.name]))
	}
	t.Logf("SUMMARY config churn: %d changes in %v (seed %d): %s; %d clients: %d set-ups (%d failed: %d overlapping the %d marked windows, %d outside), "+
		"%d teardowns (%d failed), set-ups per network: %s; %d distinct configs used, %d set-ups on a half-written config, "+
		"%d snapshot generations (%d default network switches), %d snapshot networks not written completely; %d status polls, %d not-ready (%d in marked windows, %d flips), "+
		"%d not-ready outside windows; %d pods torn down with another config; %d set-ups whose IP, store or cache disagreed with their network",
		changes, took.Round(time.Second), seed, strings.Join(kinds, ", "), churnClients, len(tl.setups), failedIn+failedOut, failedIn,
		len(w.windows.list), failedOut, tl.teardowns, len(tl.tdFailed), strings.Join(perNet, ", "), len(tl.usedConfigs), halfWritten,
		rd.generations, rd.switches, len(rd.unknown), rd.polls, len(rd.notReady), notReadyIn, rd.flips, flapsOut, len(tl.wrongTear), len(tl.wrongNet))

	if changes != ops {
		t.Errorf("the writer made %d changes, want %d", changes, ops)
	}
	if failedOut > 0 {
		t.Errorf("%d set-ups failed while a valid config existed throughout, e.g.:\n  %s", failedOut, strings.Join(failures, "\n  "))
	}
	for _, u := range rd.unknown[:min(len(rd.unknown), 5)] {
		t.Errorf("the plugin published a config the writer never wrote completely: %s", u)
	}
	if flapsOut > 0 {
		t.Errorf("readiness dropped %d times while a valid config existed", flapsOut)
	}
	for _, list := range []struct {
		what string
		l    []string
	}{{"teardown failed", tl.tdFailed}, {"torn down with another config", tl.wrongTear}, {"network mismatch", tl.wrongNet}} {
		for _, e := range list.l[:min(len(list.l), 5)] {
			t.Errorf("%s: %s", list.what, e)
		}
	}
	used := 0
	for _, c := range tl.perNetwork {
		if c > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("set-ups used %d networks; the churn should have moved the default network between at least two", used)
	}
	if len(tl.setups)-failedIn-failedOut == 0 {
		t.Error("no set-up succeeded")
	}
}
