package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	cnilibrary "github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
)

// CNI is go-cni's interface, which runtimes call to network their pods.
type CNI interface {
	// Setup setup the network for the namespace
	Setup(ctx context.Context, id string, path string, opts ...NamespaceOpts) (*Result, error)
	// SetupSerially sets up each of the network interfaces for the namespace in serial
	SetupSerially(ctx context.Context, id string, path string, opts ...NamespaceOpts) (*Result, error)
	// Remove tears down the network of the namespace.
	Remove(ctx context.Context, id string, path string, opts ...NamespaceOpts) error
	// Check checks if the network is still in desired state
	Check(ctx context.Context, id string, path string, opts ...NamespaceOpts) error
	// Load loads the cni network config
	Load(opts ...Opt) error
	// Status checks the status of the cni initialization
	Status() error
	// GetConfig returns a copy of the CNI plugin configurations as parsed by CNI
	GetConfig() *ConfigResult
}

// ConfigResult is the configuration GetConfig reports (containerd shows it in crictl info).
type ConfigResult struct {
	PluginDirs       []string
	PluginConfDir    string
	PluginMaxConfNum int
	Prefix           string
	Networks         []*ConfNetwork
}

// ConfNetwork is one network of a ConfigResult and the pod interface it gets.
type ConfNetwork struct {
	Config *NetworkConfList
	IFName string
}

// NetworkConfList is a source bytes to string version of cnilibrary.NetworkConfigList
type NetworkConfList struct {
	Name       string
	CNIVersion string
	Plugins    []*NetworkConf
	Source     string
}

// NetworkConf is a source bytes to string conversion of cnilibrary.NetworkConfig
type NetworkConf struct {
	Network *types.NetConf
	Source  string
}

// libcni is the CNI a caller gets from New: go-cni's options and Load on top of a
// cninetwork.Plugin. Its name is go-cni's, so that Opt's signature is go-cni's too.
type libcni struct {
	config

	// networkCount is how many networks, loopback included, Status wants ready.
	networkCount int
	// cacheDir and stateDir are the Plugin's (WithCacheDir, WithStateDir).
	cacheDir, stateDir string
	// pluginOpts are more options for the Plugin (WithPluginOptions).
	pluginOpts []cninetwork.Option
	// pending is what the Opts of the Load (or New) being applied ask for.
	pending loadSpec

	// loadMu serializes Load and Close.
	loadMu sync.Mutex
	// ops is held for reading by every operation on the current Plugin, and for writing while
	// the Plugin is replaced, which only a Load that changes the configuration's source does.
	ops sync.RWMutex
	// cur is what the last Load set up; nil before it.
	cur atomic.Pointer[loaded]
}

// loadSpec is what one Load's options ask for.
type loadSpec struct {
	// lo: the pod's loopback comes up through the loopback plugin (WithLoNetwork).
	lo bool
	// dir: the configuration directory's networks (WithDefaultConf, WithAllConf), the first
	// dirMax of them in lexical order of file name (0: all).
	dir    bool
	dirMax int
	// explicit are the configurations given as bytes or files, in order.
	explicit []*cnilibrary.NetworkConfigList
}

// loaded is a Plugin and what it was set up from.
type loaded struct {
	spec loadSpec
	key  string
	// confDir is the Plugin's configuration directory: the runtime's, or the one the
	// configurations given as bytes or files were written to.
	confDir string
	plugin  *cninetwork.Plugin
	stop    context.CancelFunc
}

// New returns a CNI configured by opts. Like go-cni's, it loads nothing unless opts include a
// configuration (WithDefaultConf, WithConfListBytes, ...): a runtime calls Load next.
func New(config ...Opt) (CNI, error) {
	c := defaultCNIConfig()
	for _, o := range config {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if !c.pending.empty() {
		if err := c.commit(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func defaultCNIConfig() *libcni {
	return &libcni{
		config: config{
			pluginDirs:       []string{DefaultCNIDir},
			pluginConfDir:    DefaultNetDir,
			pluginMaxConfNum: DefaultMaxConfNum,
			prefix:           DefaultPrefix,
		},
		networkCount: 1,
		cacheDir:     cnilibrary.CacheDir,
	}
}

func (s loadSpec) empty() bool { return !s.lo && !s.dir && len(s.explicit) == 0 }

// Load applies opts, which say where the pod networks come from. Unlike go-cni's, it does not
// re-read and replace the networks each time: the configuration directory is watched by the
// Plugin behind it (package confwatch), so a Load that asks again for the directory's networks
// changes nothing and returns at once, whatever the directory holds at that instant. A file
// being written, a broken file or the directory being deleted and re-created never leaves the
// node without its networks: the Plugin keeps the last valid ones. Load fails, wrapping ErrLoad,
// when an Opt fails or, for the directory, when it holds no valid network.
func (c *libcni) Load(opts ...Opt) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.pending = loadSpec{}
	for _, o := range opts {
		if err := o(c); err != nil {
			return fmt.Errorf("cni config load failed: %w: %w", err, ErrLoad)
		}
	}
	if err := c.commit(); err != nil {
		return fmt.Errorf("cni config load failed: %w: %w", err, ErrLoad)
	}
	if l := c.cur.Load(); l != nil && l.spec.dir {
		if snap := l.plugin.Snapshot(); snap.Default == nil {
			return fmt.Errorf("cni config load failed: %w: %w: %w", snap.Err, ErrCNINotInitialized, ErrLoad)
		}
	}
	return nil
}

// commit makes the pending spec current, replacing the Plugin if its source changed.
// loadMu is held, or c is not shared yet.
func (c *libcni) commit() error {
	spec := c.pending
	c.pending = loadSpec{}
	if spec.dir && len(spec.explicit) > 0 {
		return fmt.Errorf("the configuration directory's networks and networks given as bytes or files cannot be mixed in one Load: %w", ErrInvalidConfig)
	}
	confDir := c.pluginConfDir
	if !spec.dir {
		dir, err := c.writeExplicit(spec.explicit)
		if err != nil {
			return err
		}
		confDir = dir
	}
	key := fmt.Sprintf("%t\x00%s\x00%s", spec.lo, confDir, explicitDigest(spec.explicit))
	if old := c.cur.Load(); old != nil && old.key == key {
		c.cur.Store(&loaded{spec: spec, key: key, confDir: confDir, plugin: old.plugin, stop: old.stop})
		return nil
	}
	opts := append([]cninetwork.Option{}, c.pluginOpts...)
	opts = append(opts,
		cninetwork.WithConfDir(confDir),
		cninetwork.WithBinDirs(c.pluginDirs...),
		cninetwork.WithCacheDir(c.cacheDir),
		cninetwork.WithStateDir(c.stateDirFor()),
	)
	if spec.lo {
		opts = append(opts, cninetwork.WithLoopbackPlugin())
	} else {
		opts = append(opts, cninetwork.WithoutLoopback())
	}
	p, err := cninetwork.New(opts...)
	if err != nil {
		return err
	}
	// The old Plugin is closed before the new one starts, once no operation uses it: both
	// record into one state directory.
	c.ops.Lock()
	defer c.ops.Unlock()
	if old := c.cur.Load(); old != nil {
		old.stop()
		_ = old.plugin.Close()
		if old.confDir != c.pluginConfDir && old.confDir != confDir {
			// The configurations the old Plugin was given as bytes or files: the records of
			// the pods set up with them hold them too, so nothing needs them any more.
			_ = os.RemoveAll(old.confDir)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	if err := p.Run(ctx); err != nil {
		stop()
		c.cur.Store(nil)
		return err
	}
	c.cur.Store(&loaded{spec: spec, key: key, confDir: confDir, plugin: p, stop: stop})
	return nil
}

// stateDirFor is the Plugin's state directory: WithStateDir's, else one per configuration
// directory under the cache directory, so that the instances a runtime makes for its runtime
// handlers' directories never share their records.
func (c *libcni) stateDirFor() string {
	if c.stateDir != "" {
		return c.stateDir
	}
	sum := sha256.Sum256([]byte(c.pluginConfDir))
	return filepath.Join(c.cacheDir, "cnishim-gocni", hex.EncodeToString(sum[:8]))
}

// writeExplicit writes the configurations given as bytes or files into a directory of their
// own, named so that their lexical order is theirs, and returns it.
func (c *libcni) writeExplicit(lists []*cnilibrary.NetworkConfigList) (string, error) {
	dir := filepath.Join(c.stateDirFor(), "conf", explicitDigest(lists))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", err
	}
	for i, l := range lists {
		name := filepath.Join(tmp, fmt.Sprintf("%05d.conflist", i))
		if err := os.WriteFile(name, l.Bytes, 0o600); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func explicitDigest(lists []*cnilibrary.NetworkConfigList) string {
	h := sha256.New()
	for _, l := range lists {
		fmt.Fprintf(h, "%d\x00", len(l.Bytes))
		h.Write(l.Bytes)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// networks returns the networks pods get now, in order, the default first, and how many
// networks that makes with loopback. l may be nil.
func (l *loaded) networks() ([]*confwatch.Network, int) {
	if l == nil {
		return nil, 0
	}
	snap := l.plugin.Snapshot()
	var nets []*confwatch.Network
	if snap.Default != nil {
		nets = append(nets, snap.Default)
		for _, n := range snap.Networks {
			if l.spec.dir && l.spec.dirMax > 0 && len(nets) >= l.spec.dirMax {
				break
			}
			if n != snap.Default {
				nets = append(nets, n)
			}
		}
	}
	count := len(nets)
	if l.spec.lo {
		count++
	}
	return nets, count
}

// ready returns the current Plugin and the networks pods get now (see networks), or an error
// wrapping ErrCNINotInitialized that says why it cannot set up pods.
func (c *libcni) ready(ctx context.Context) (*loaded, []*confwatch.Network, error) {
	l := c.cur.Load()
	if l == nil {
		return nil, nil, fmt.Errorf("no CNI configuration loaded: %w", ErrCNINotInitialized)
	}
	if err := l.plugin.Status(ctx); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCNINotInitialized, err)
	}
	nets, n := l.networks()
	if n < c.networkCount {
		return nil, nil, fmt.Errorf("%w: %d networks ready, %d wanted", ErrCNINotInitialized, n, c.networkCount)
	}
	return l, nets, nil
}

// Status returns nil when pods can be set up: the networks WithMinNetworkCount asks for are
// valid, and the default network's plugins last answered CNI STATUS (1.1.0 and later) with
// success. It answers from memory: STATUS is polled in the background, never exec'd per call.
// Its error wraps ErrCNINotInitialized and cninetwork.ErrNotReady and says why.
func (c *libcni) Status() error {
	_, _, err := c.ready(context.Background())
	return err
}

// Setup attaches the pod sandbox id, whose network namespace is path, to its networks:
// loopback (WithLoNetwork), the default network on eth0, the directory's next networks up to
// WithPluginMaxConfNum on eth1 and on, and the networks its NPWG networks annotation
// (k8s.v1.cni.cncf.io/networks, in the pod annotations capability) selects. Their chains run
// side by side within the Plugin's admission bounds; if one fails, every one is deleted again
// before Setup returns.
func (c *libcni) Setup(ctx context.Context, id string, path string, opts ...NamespaceOpts) (*Result, error) {
	c.ops.RLock()
	defer c.ops.RUnlock()
	l, nets, err := c.ready(ctx)
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(id, path, opts...)
	if err != nil {
		return nil, err
	}
	pod, err := ns.pod(c.prefix, nets)
	if err != nil {
		return nil, err
	}
	st, err := l.plugin.SetUpPod(ctx, pod)
	if err != nil {
		return nil, err
	}
	return c.result(id, path, st)
}

// SetupSerially is Setup: the Plugin attaches a pod's networks side by side, each chain on its
// own, within its admission bounds.
func (c *libcni) SetupSerially(ctx context.Context, id string, path string, opts ...NamespaceOpts) (*Result, error) {
	return c.Setup(ctx, id, path, opts...)
}

// Remove detaches the pod sandbox id from every network it was set up on, with the
// configuration it was set up with, whatever the directory holds now and whether or not a
// network is ready. It is idempotent: a second Remove, an empty or vanished path and a sandbox
// never set up all succeed.
func (c *libcni) Remove(ctx context.Context, id string, path string, opts ...NamespaceOpts) error {
	return c.onPod(id, path, opts, func(p *cninetwork.Plugin, pod *cninetwork.Pod) error {
		return p.TearDownPod(ctx, pod)
	})
}

// Check runs CNI CHECK on each of the pod's attachments, with the configuration it was set up
// with.
func (c *libcni) Check(ctx context.Context, id string, path string, opts ...NamespaceOpts) error {
	return c.onPod(id, path, opts, func(p *cninetwork.Plugin, pod *cninetwork.Pod) error {
		return p.CheckPod(ctx, pod)
	})
}

// onPod runs op on the current Plugin for the sandbox, which it knows by its records: only
// the sandbox's ID and netns path are read.
func (c *libcni) onPod(id, path string, opts []NamespaceOpts, op func(*cninetwork.Plugin, *cninetwork.Pod) error) error {
	c.ops.RLock()
	defer c.ops.RUnlock()
	l := c.cur.Load()
	if l == nil {
		return fmt.Errorf("no CNI configuration loaded: %w", ErrCNINotInitialized)
	}
	if _, err := newNamespace(id, path, opts...); err != nil {
		return err
	}
	return op(l.plugin, &cninetwork.Pod{SandboxID: id, NetNS: path})
}

// GetConfig returns the networks pods get now, loopback first when loaded, with the
// directories and options, as go-cni reports them.
func (c *libcni) GetConfig() *ConfigResult {
	r := &ConfigResult{
		PluginDirs:       c.pluginDirs,
		PluginConfDir:    c.pluginConfDir,
		PluginMaxConfNum: c.pluginMaxConfNum,
		Prefix:           c.prefix,
	}
	l := c.cur.Load()
	if l == nil {
		return r
	}
	if l.spec.lo {
		r.Networks = append(r.Networks, confNetwork(loopbackList, "lo"))
	}
	nets, _ := l.networks()
	for i, n := range nets {
		r.Networks = append(r.Networks, confNetwork(n.Config, getIfName(c.prefix, i)))
	}
	return r
}

func confNetwork(list *cnilibrary.NetworkConfigList, ifName string) *ConfNetwork {
	conf := &NetworkConfList{Name: list.Name, CNIVersion: list.CNIVersion, Source: string(list.Bytes)}
	for _, p := range list.Plugins {
		conf.Plugins = append(conf.Plugins, &NetworkConf{Network: p.Network, Source: string(p.Bytes)})
	}
	return &ConfNetwork{Config: conf, IFName: ifName}
}

// Networks returns the networks pods get now, as go-cni's Networks does. Their methods run
// libcni directly, outside the Plugin's records and bounds.
func (c *libcni) Networks() []*Network {
	l := c.cur.Load()
	if l == nil {
		return nil
	}
	cni := cnilibrary.NewCNIConfigWithCacheDir(c.pluginDirs, c.cacheDir, nil)
	var out []*Network
	if l.spec.lo {
		out = append(out, &Network{cni: cni, config: loopbackList, ifName: "lo"})
	}
	nets, _ := l.networks()
	for i, n := range nets {
		out = append(out, &Network{cni: cni, config: n.Config, ifName: getIfName(c.prefix, i)})
	}
	return out
}

// Close stops the Plugin's watcher and STATUS poller and waits for them. go-cni has no Close;
// a caller that drops its CNI for good reaches it through io.Closer.
func (c *libcni) Close() error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.ops.Lock()
	defer c.ops.Unlock()
	l := c.cur.Swap(nil)
	if l == nil {
		return nil
	}
	l.stop()
	return l.plugin.Close()
}

// loopbackList is go-cni's loopback network (WithLoNetwork), as GetConfig and Networks report
// it; the Plugin attaches its own, of the same name and plugin.
var loopbackList = func() *cnilibrary.NetworkConfigList {
	l, err := cnilibrary.ConfListFromBytes([]byte(`{"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}`))
	if err != nil {
		panic(err)
	}
	return l
}()

func getIfName(prefix string, i int) string {
	return fmt.Sprintf("%s%d", prefix, i)
}
