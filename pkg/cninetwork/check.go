package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/containernetworking/cni/libcni"
)

// CheckPod runs CNI CHECK for each of the pod's cached attachments, with the configuration and
// arguments cached at ADD and pod.NetNS, which must still be a network namespace. Networks
// whose cniVersion predates CHECK (0.4.0), or that disable it, pass. A sandbox with nothing
// cached gets an error wrapping ErrUnknownSandbox. It waits and is bounded as every operation
// is (see the package doc), each network's chain in a slot of the CHECK lane of its own.
func (p *Plugin) CheckPod(ctx context.Context, pod *Pod) (retErr error) {
	o := p.begin(ctx, opCheck, pod)
	defer func() { o.end(retErr, "Checked pod network") }()
	if err := checkSandboxID(pod); err != nil {
		return err
	}
	if _, err := netns.IsNetNS(pod.NetNS); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidPod, pod, err)
	}
	wait, cancel := p.waitContext(ctx)
	defer cancel()
	unlock, err := o.lock(wait)
	if err != nil {
		return err
	}
	defer unlock()

	cached, err := p.cni.GetCachedAttachments(pod.SandboxID)
	if err != nil {
		return fmt.Errorf("%s: read CNI cache: %w", pod, err)
	}
	if len(cached) == 0 {
		return fmt.Errorf("%s: %w", pod, ErrUnknownSandbox)
	}
	var errs []error
	for _, a := range cached {
		list, rt, err := cachedInvocation(a, pod.NetNS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cstart := time.Now()
		err = p.inSlot(ctx, ctx, laneCheck, a.Network, "CHECK", func(ctx context.Context) error {
			tctx, tr := withTrace(ctx)
			if err := p.cni.CheckNetworkList(tctx, list, rt); err != nil && !errors.Is(err, libcni.ErrorCheckNotSupp) {
				return chainError(tctx, cstart, a.Network, "CHECK", tr, true, err)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", pod, errors.Join(errs...))
	}
	return nil
}
