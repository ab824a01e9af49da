//go:build linux

package criserver

import (
	"context"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The container RPCs below only read, and a runtime without containers answers them truthfully:
// there are none. Every RPC that would create, start or change a container stays Unimplemented.

// ListContainers returns no containers: cnishim runs none.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{}, nil
}

// StreamContainers ends the stream at once: cnishim runs no containers.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	return nil
}

// ContainerStatus answers codes.NotFound for every ID: cnishim runs no containers.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	return nil, noContainer(req.GetContainerId())
}

// ContainerStats answers codes.NotFound for every ID: cnishim runs no containers.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	return nil, noContainer(req.GetContainerId())
}

// ListContainerStats returns no stats: cnishim runs no containers.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{}, nil
}

// StreamContainerStats ends the stream at once: cnishim runs no containers.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	return nil
}

func noContainer(id string) error {
	return status.Errorf(codes.NotFound, "container %s not found: cnishim runs network sandboxes only and has no containers", cniargs.QuoteUnprintable(id))
}
