package impls

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// floor is raw libcni on the default conflist: no loopback, no result parsing, nothing but
// what the plugins themselves cost.
type floor struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func newFloor(cfg Config) (Impl, error) {
	list, err := DefaultConfList(cfg.ConfDir)
	if err != nil {
		return nil, err
	}
	return &floor{
		cni:  libcni.NewCNIConfigWithCacheDir(cfg.binDirs(), cfg.CacheDir, DefaultExec()),
		list: list,
	}, nil
}

// DefaultExec is libcni's plugin executor as go-cni builds it. Pass it explicitly: a
// CNIConfig built with a nil one sets its default lazily, which races under concurrent use.
func DefaultExec() invoke.Exec {
	return &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
}

// DefaultConfList loads the lexically first .conflist of dir, the default network as the
// kubelet picks it. The benchmark's conf dir holds just one.
func DefaultConfList(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, fmt.Errorf("conf dir %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("conf dir %s: no .conflist", dir)
	}
	list, err := libcni.ConfListFromFile(filepath.Clean(files[0]))
	if err != nil {
		return nil, fmt.Errorf("conflist %s: %w", files[0], err)
	}
	return list, nil
}

// RuntimeConf is the runtime configuration the floor passes for p on interface eth0; the
// leak sweep uses it too.
func RuntimeConf(p *PodSpec) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      "eth0",
		Args:        cniArgs(p),
	}
	if p.HostPort != 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": []portMapping{{
			HostPort: p.HostPort, ContainerPort: ContainerPort, Protocol: "tcp", HostIP: p.HostIP,
		}}}
	}
	return rt
}

func (f *floor) SetUp(ctx context.Context, p *PodSpec) error {
	if p.ExtraNetwork != "" {
		return errNoExtraNetworks(Floor, p)
	}
	if _, err := f.cni.AddNetworkList(ctx, f.list, RuntimeConf(p)); err != nil {
		return fmt.Errorf("floor: add pod %s: %w", p, err)
	}
	return nil
}

func (f *floor) TearDown(ctx context.Context, p *PodSpec) error {
	if err := f.cni.DelNetworkList(ctx, f.list, RuntimeConf(p)); err != nil {
		return fmt.Errorf("floor: del pod %s: %w", p, err)
	}
	return nil
}

func (f *floor) Close() error { return nil }
