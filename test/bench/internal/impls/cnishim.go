package impls

import (
	"context"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/prometheus/client_golang/prometheus"
)

// cnishim drives cninetwork.Plugin with its defaults (in-process loopback), metrics
// registered as a runtime would, and the admission limits the variant asks for.
type cnishim struct {
	plugin *cninetwork.Plugin
}

// readyTimeout bounds the wait for the Plugin's first ready status.
const readyTimeout = 30 * time.Second

func newCnishim(ctx context.Context, cfg Config) (_ Impl, retErr error) {
	opts := []cninetwork.Option{
		cninetwork.WithConfDir(cfg.ConfDir),
		cninetwork.WithBinDirs(cfg.binDirs()...),
		cninetwork.WithCacheDir(cfg.CacheDir),
		cninetwork.WithRegisterer(prometheus.NewRegistry()),
	}
	if cfg.Limits != nil {
		o, err := admissionOption(*cfg.Limits)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	p, err := cninetwork.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("cnishim: %w", err)
	}
	if err := p.Run(ctx); err != nil {
		return nil, fmt.Errorf("cnishim: run: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = p.Close()
		}
	}()
	wait, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		err := p.Status(wait)
		if err == nil {
			return &cnishim{plugin: p}, nil
		}
		select {
		case <-wait.Done():
			return nil, fmt.Errorf("cnishim: not ready after %s: %w", readyTimeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func cnishimPod(p *PodSpec) *cninetwork.Pod {
	pod := &cninetwork.Pod{
		SandboxID: p.ID,
		Name:      p.Name,
		Namespace: p.Namespace,
		UID:       p.UID,
		NetNS:     p.NetNS,
	}
	if p.HostPort != 0 {
		pod.PortMappings = []cninetwork.PortMapping{{Protocol: "tcp", ContainerPort: ContainerPort, HostPort: p.HostPort, HostIP: p.HostIP}}
	}
	if p.ExtraNetwork != "" {
		pod.ExtraNetworks = []cninetwork.NetworkSelection{{Name: p.ExtraNetwork, Interface: ExtraIfName}}
	}
	return pod
}

func (c *cnishim) SetUp(ctx context.Context, p *PodSpec) error {
	if _, err := c.plugin.SetUpPod(ctx, cnishimPod(p)); err != nil {
		return fmt.Errorf("cnishim: set up pod %s: %w", p, err)
	}
	return nil
}

func (c *cnishim) TearDown(ctx context.Context, p *PodSpec) error {
	if err := c.plugin.TearDownPod(ctx, cnishimPod(p)); err != nil {
		return fmt.Errorf("cnishim: tear down pod %s: %w", p, err)
	}
	return nil
}

func (c *cnishim) Close() error { return c.plugin.Close() }
