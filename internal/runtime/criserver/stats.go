//go:build linux

package criserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// defaultInterface is the pod interface CRI stats report as the default one: the name the
// network plugin gives the pod's interface on its default network.
const defaultInterface = "eth0"

// PodSandboxStats returns the sandbox's attributes and, for a ready sandbox with a namespace of
// its own, the network counters of each of its interfaces, read inside that namespace. A
// NOTREADY sandbox has no namespace, and a host-network sandbox's interfaces are the node's and
// not the pod's, so both get attributes and no network stats. cnishim runs no processes, so there
// are no CPU, memory or process stats. An unknown ID is codes.NotFound.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	rec, err := s.resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, grpcError("pod sandbox stats", err)
	}
	st, err := s.sandboxStats(rec)
	if errors.Is(err, sandboxstore.ErrNotFound) {
		return nil, grpcError("pod sandbox stats", err)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "pod sandbox stats %s: %v", rec.ID, err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats returns the stats, as PodSandboxStats does, of the sandboxes matching the
// filter: ID prefix and labels (all of LabelSelector's pairs must match). A sandbox removed while
// the list is made is left out.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	stats, err := s.listStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: stats}, nil
}

// StreamPodSandboxStats sends the stats ListPodSandboxStats would return in one message (none
// when there are none), then ends the stream.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	stats, err := s.listStats(stream.Context(), req.GetFilter())
	if err != nil || len(stats) == 0 {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: stats})
}

func (s *Server) listStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	var out []*runtimeapi.PodSandboxStats
	var errs []error
	for _, rec := range s.cfg.Store.List() {
		if !strings.HasPrefix(rec.ID, f.GetId()) || !matchLabels(rec.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.sandboxStats(rec)
		switch {
		case errors.Is(err, sandboxstore.ErrNotFound):
			klog.FromContext(ctx).V(4).Info("Sandbox removed while listing stats", "podSandboxID", rec.ID)
		case err != nil:
			errs = append(errs, fmt.Errorf("pod sandbox %s: %w", rec.ID, err))
		default:
			out = append(out, st)
		}
	}
	if len(errs) > 0 {
		return nil, status.Errorf(codes.Internal, "list pod sandbox stats: %v", errors.Join(errs...))
	}
	return out, nil
}

// sandboxStats returns the stats of rec. When the counters cannot be read because the sandbox
// was stopped or removed meanwhile, it answers for the sandbox as it is now: without network
// stats, or with sandboxstore.ErrNotFound.
func (s *Server) sandboxStats(rec sandboxstore.Record) (*runtimeapi.PodSandboxStats, error) {
	st := &runtimeapi.PodSandboxStats{Attributes: &runtimeapi.PodSandboxAttributes{
		Id:          rec.ID,
		Metadata:    rec.Config.GetMetadata(),
		Labels:      rec.Config.GetLabels(),
		Annotations: rec.Config.GetAnnotations(),
	}}
	if rec.State != sandboxstore.StateReady || rec.HostNetwork {
		return st, nil
	}
	usage, err := networkUsage(rec.NetNSPath)
	if err != nil {
		now, gerr := s.cfg.Store.Get(rec.ID)
		if gerr != nil {
			return nil, gerr
		}
		if now.State == sandboxstore.StateReady {
			return nil, err
		}
		return st, nil
	}
	st.Linux = &runtimeapi.LinuxPodSandboxStats{Network: usage}
	return st, nil
}

// networkUsage reads the counters of every interface but loopback inside the network namespace
// at path. The default interface is eth0; the others are sorted by name.
func networkUsage(path string) (*runtimeapi.NetworkUsage, error) {
	var links []netlink.Link
	err := netns.Do(path, func() (err error) {
		links, err = netlink.LinkList()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("network counters in %s: %w", path, err)
	}
	usage := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 {
			continue
		}
		iu := &runtimeapi.NetworkInterfaceUsage{Name: a.Name}
		if c := a.Statistics; c != nil {
			iu.RxBytes = &runtimeapi.UInt64Value{Value: c.RxBytes}
			iu.RxErrors = &runtimeapi.UInt64Value{Value: c.RxErrors}
			iu.TxBytes = &runtimeapi.UInt64Value{Value: c.TxBytes}
			iu.TxErrors = &runtimeapi.UInt64Value{Value: c.TxErrors}
		}
		if a.Name == defaultInterface {
			usage.DefaultInterface = iu
		} else {
			usage.Interfaces = append(usage.Interfaces, iu)
		}
	}
	sort.Slice(usage.Interfaces, func(i, j int) bool { return usage.Interfaces[i].Name < usage.Interfaces[j].Name })
	return usage, nil
}
