package impls

import (
	"context"
	"errors"
	"fmt"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
)

// goCNI drives containerd's go-cni as containerd's CRI plugin does: the loopback network
// plus the default network of the conf dir, loaded with WithLoNetwork and WithDefaultConf,
// the kubelet's CNI_ARGS as labels, and port mappings as the portMappings capability.
//
// go-cni has no option for libcni's cache directory: its libcni uses the package default,
// libcni.CacheDir (/var/lib/cni). newGoCNI points that default at cfg.CacheDir, so that all
// three implementations write their cache on the same filesystem, in the same directory.
type goCNI struct {
	cni gocni.CNI
}

func newGoCNI(cfg Config) (Impl, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("go-cni: no cache dir")
	}
	// A process-wide default, read by libcni at every call: set before go-cni runs anything.
	// A worker builds one implementation, and the others name their cache dir themselves.
	libcni.CacheDir = cfg.CacheDir
	c, err := gocni.New(
		gocni.WithMinNetworkCount(2),
		gocni.WithPluginConfDir(cfg.ConfDir),
		gocni.WithPluginDir(cfg.binDirs()),
	)
	if err != nil {
		return nil, fmt.Errorf("go-cni: %w", err)
	}
	if err := c.Load(gocni.WithLoNetwork, gocni.WithDefaultConf); err != nil {
		return nil, fmt.Errorf("go-cni: load %s: %w", cfg.ConfDir, err)
	}
	if err := c.Status(); err != nil {
		return nil, fmt.Errorf("go-cni: not ready: %w", err)
	}
	return &goCNI{cni: c}, nil
}

func goCNIOpts(p *PodSpec) []gocni.NamespaceOpts {
	labels := make(map[string]string, 5)
	for _, kv := range cniArgs(p) {
		labels[kv[0]] = kv[1]
	}
	opts := []gocni.NamespaceOpts{gocni.WithLabels(labels)}
	if p.HostPort != 0 {
		opts = append(opts, gocni.WithCapabilityPortMap([]gocni.PortMapping{{
			HostPort: p.HostPort, ContainerPort: ContainerPort, Protocol: "tcp", HostIP: p.HostIP,
		}}))
	}
	return opts
}

func (g *goCNI) SetUp(ctx context.Context, p *PodSpec) error {
	if p.ExtraNetwork != "" {
		return errNoExtraNetworks(GoCNI, p)
	}
	if _, err := g.cni.Setup(ctx, p.ID, p.NetNS, goCNIOpts(p)...); err != nil {
		return fmt.Errorf("go-cni: set up pod %s: %w", p, err)
	}
	return nil
}

func (g *goCNI) TearDown(ctx context.Context, p *PodSpec) error {
	if err := g.cni.Remove(ctx, p.ID, p.NetNS, goCNIOpts(p)...); err != nil {
		return fmt.Errorf("go-cni: remove pod %s: %w", p, err)
	}
	return nil
}

func (g *goCNI) Close() error { return nil }
