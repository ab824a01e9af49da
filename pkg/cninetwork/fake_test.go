package cninetwork

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// execCall is one plugin exec the fake saw.
type execCall struct {
	Plugin      string // base name of the plugin path
	Command     string // CNI_COMMAND
	ContainerID string // CNI_CONTAINERID
	IfName      string // CNI_IFNAME
	NetNS       string // CNI_NETNS
	Args        string // CNI_ARGS
	Env         []string
	Stdin       []byte
}

// conf returns the call's stdin as a generic JSON object.
func (c execCall) conf(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.Stdin, &m); err != nil {
		t.Fatalf("stdin of %s %s is not JSON: %v", c.Command, c.Plugin, err)
	}
	return m
}

// reply is what the fake does for one plugin and command.
type reply struct {
	out   string        // stdout; empty for the default behaviour
	err   error         // returned as the exec's error
	sleep time.Duration // wait this long first, or until ctx ends (then fail like a killed plugin)
	block chan struct{} // wait until closed, or until ctx ends
	// hook runs when the call starts; it may block.
	hook func(ctx context.Context, c execCall)
}

// fakeExec is a hand-written invoke.Exec that records every call (plugin, environment, stdin)
// and answers as configured. By default ADD of a chain's first plugin returns a result with
// one sandbox interface and one IPv4 address (10.88.N/250.N%250, N counting ADDs), later plugins echo
// their prevResult, and every other command succeeds with no output.
type fakeExec struct {
	version.PluginDecoder

	// quiet makes the fake record no calls, for benchmarks.
	quiet bool

	mu      sync.Mutex
	calls   []execCall
	replies map[string]reply // key "plugin/COMMAND"
	missing map[string]bool  // plugins FindInPath does not find
	nextIP  int
	// inFlight counts execs running per container ID; maxInFlight is its maximum.
	inFlight    map[string]int
	maxInFlight map[string]int
	running     int
	maxRunning  int
	// runningCmd counts execs running per CNI command; maxRunningCmd is its maximum.
	runningCmd    map[string]int
	maxRunningCmd map[string]int
}

func newFakeExec() *fakeExec {
	return &fakeExec{
		replies:     map[string]reply{},
		missing:     map[string]bool{},
		inFlight:    map[string]int{},
		maxInFlight: map[string]int{},

		runningCmd:    map[string]int{},
		maxRunningCmd: map[string]int{},
	}
}

func (f *fakeExec) set(plugin, command string, r reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[plugin+"/"+command] = r
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing[plugin] || len(paths) == 0 {
		return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
	}
	return filepath.Join(paths[0], plugin), nil
}

func (f *fakeExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	c := execCall{Plugin: filepath.Base(pluginPath), Env: slices.Clone(environ), Stdin: slices.Clone(stdin)}
	sort.Strings(c.Env)
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "CNI_COMMAND":
			c.Command = v
		case "CNI_CONTAINERID":
			c.ContainerID = v
		case "CNI_IFNAME":
			c.IfName = v
		case "CNI_NETNS":
			c.NetNS = v
		case "CNI_ARGS":
			c.Args = v
		}
	}
	if c.Command == "VERSION" {
		return []byte(`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`), nil
	}

	f.mu.Lock()
	if !f.quiet {
		f.calls = append(f.calls, c)
	}
	r := f.replies[c.Plugin+"/"+c.Command]
	f.inFlight[c.ContainerID]++
	f.maxInFlight[c.ContainerID] = max(f.maxInFlight[c.ContainerID], f.inFlight[c.ContainerID])
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.runningCmd[c.Command]++
	f.maxRunningCmd[c.Command] = max(f.maxRunningCmd[c.Command], f.runningCmd[c.Command])
	if c.Command == "ADD" {
		f.nextIP++
	}
	ipN := f.nextIP
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight[c.ContainerID]--
		f.running--
		f.runningCmd[c.Command]--
		f.mu.Unlock()
	}()

	if r.hook != nil {
		r.hook(ctx, c)
	}
	killed := &types.Error{Code: 999, Msg: "netplugin failed with no error message: signal: killed"}
	if r.sleep > 0 {
		t := time.NewTimer(r.sleep)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, killed
		}
	}
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return nil, killed
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.out != "" {
		return []byte(r.out), nil
	}
	if c.Command != "ADD" {
		return nil, nil
	}
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, err
	}
	if len(conf.PrevResult) > 0 {
		return conf.PrevResult, nil
	}
	return []byte(fmt.Sprintf(`{"cniVersion":%q,"interfaces":[{"name":"veth%d"},{"name":%q,"sandbox":%q}],"ips":[{"address":"10.88.%d.%d/16","interface":1}]}`,
		conf.CNIVersion, ipN, c.IfName, c.NetNS, ipN/250%250, ipN%250)), nil
}

// callsOf returns the calls so far with the given command ("" for all).
func (f *fakeExec) callsOf(command string) []execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []execCall
	for _, c := range f.calls {
		if command == "" || c.Command == command {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeExec) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// summary lists calls as "COMMAND plugin network ifname" for compact assertions.
func summary(t *testing.T, calls []execCall) []string {
	t.Helper()
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = fmt.Sprintf("%s %s %v %s", c.Command, c.Plugin, c.conf(t)["name"], c.IfName)
	}
	return out
}

// fakeSource is a snapshotSource whose snapshots the test publishes.
type fakeSource struct {
	mu      sync.Mutex
	snap    *confwatch.Snapshot
	changed chan struct{} // closed and replaced at each publish
	runs    sync.WaitGroup
}

func newFakeSource() *fakeSource {
	return &fakeSource{snap: &confwatch.Snapshot{Dir: "/etc/cni/net.d"}, changed: make(chan struct{})}
}

// publish makes a new snapshot with the given networks, the first being the default (none:
// not ready, with err).
func (s *fakeSource) publish(err error, nets ...*confwatch.Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &confwatch.Snapshot{Generation: s.snap.Generation + 1, Dir: s.snap.Dir, Networks: nets, Err: err}
	if len(nets) > 0 {
		snap.Default = nets[0]
	}
	s.snap = snap
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeSource) Scan(ctx context.Context) *confwatch.Snapshot { return s.Snapshot() }

func (s *fakeSource) Run(ctx context.Context) error {
	s.runs.Add(1)
	defer s.runs.Done()
	<-ctx.Done()
	return ctx.Err()
}

func (s *fakeSource) Snapshot() *confwatch.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *fakeSource) Wait(ctx context.Context, after uint64) (*confwatch.Snapshot, error) {
	for {
		s.mu.Lock()
		snap, ch := s.snap, s.changed
		s.mu.Unlock()
		if snap.Generation > after {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// network parses a conflist as confwatch would publish it.
func network(t testing.TB, conflist string) *confwatch.Network {
	t.Helper()
	list, err := libcni.ConfListFromBytes([]byte(conflist))
	if err != nil {
		t.Fatalf("conflist %s: %v", conflist, err)
	}
	n := &confwatch.Network{File: "/etc/cni/net.d/" + list.Name + ".conflist", Name: list.Name, CNIVersion: list.CNIVersion, Config: list}
	caps := map[string]bool{}
	for _, pl := range list.Plugins {
		n.PluginTypes = append(n.PluginTypes, pl.Network.Type)
		for c, ok := range pl.Network.Capabilities {
			if ok {
				caps[c] = true
			}
		}
	}
	for c := range caps {
		n.Capabilities = append(n.Capabilities, c)
	}
	sort.Strings(n.Capabilities)
	sum := sha256.Sum256([]byte(conflist))
	n.Digest = hex.EncodeToString(sum[:])
	return n
}

func withSource(s snapshotSource) Option { return func(o *options) { o.source = s } }

const netnsPath = "/proc/self/ns/net" // a network namespace any user can name

// newTestPlugin returns a Plugin on fake exec and source with a fresh cache dir and loopback
// off, closed at the end of the test.
func newTestPlugin(t testing.TB, fe *fakeExec, src *fakeSource, opts ...Option) *Plugin {
	t.Helper()
	all := append([]Option{
		WithExec(fe),
		withSource(src),
		WithCacheDir(t.TempDir()),
		WithBinDirs("/opt/cni/bin"),
		WithoutLoopback(),
	}, opts...)
	p, err := New(all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testPod(id string) *Pod {
	return &Pod{SandboxID: id, Name: "web-" + id, Namespace: "default", UID: "uid-" + id, NetNS: netnsPath}
}

// Conflists used across tests.
const (
	bridgeNet = `{"cniVersion":"1.0.0","name":"net-a","plugins":[
		{"type":"bridge","bridge":"cni0"},
		{"type":"portmap","capabilities":{"portMappings":true}},
		{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`
	otherNet  = `{"cniVersion":"1.0.0","name":"net-b","plugins":[{"type":"ptp"}]}`
	statusNet = `{"cniVersion":"1.1.0","name":"net-s","plugins":[{"type":"bridge"},{"type":"firewall"}]}`
)

// validIDs returns a GC valid function that answers ids.
func validIDs(ids ...string) func(context.Context) ([]string, error) {
	return func(context.Context) ([]string, error) { return ids, nil }
}
