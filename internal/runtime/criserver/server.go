//go:build linux

// Package criserver serves the CRI v1 RuntimeService for network-only pod sandboxes: each
// sandbox is a network namespace whose network a cninetwork.Plugin sets up. The read-only
// container and image RPCs answer as a runtime without containers or images truthfully can (no
// containers, no images, the state directory's filesystem); every RPC that would pull an image or
// create, run or change a container answers codes.Unimplemented. Sandbox records persist in a
// sandboxstore.Store so that a restarted server knows every sandbox it made and can finish or
// roll back what a crash cut off.
package criserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/keylock"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// RuntimeName is the runtime name the Version RPC reports.
const RuntimeName = "cnishim"

// DefaultCleanupTimeout bounds the rollback of a failed set-up and each teardown done at start.
const DefaultCleanupTimeout = 2 * time.Minute

// Network is what the server needs of the CNI network plugin. *cninetwork.Plugin implements it.
type Network interface {
	Status(ctx context.Context) error
	Snapshot() *confwatch.Snapshot
	ValidatePod(pod *cninetwork.Pod) error
	SetUpPod(ctx context.Context, pod *cninetwork.Pod) (*cninetwork.PodNetworkStatus, error)
	TearDownPod(ctx context.Context, pod *cninetwork.Pod) error
	GetPodNetworkStatus(ctx context.Context, pod *cninetwork.Pod) (*cninetwork.PodNetworkStatus, error)
	CheckPod(ctx context.Context, pod *cninetwork.Pod) error
	GC(ctx context.Context, valid func(context.Context) ([]string, error)) error
	SetPodCIDRs(cidrs ...string) error
}

var _ Network = (*cninetwork.Plugin)(nil)

// Config is what New needs.
type Config struct {
	// Network sets up and tears down sandbox networks. Required.
	Network Network
	// Store holds the sandbox records. Required.
	Store *sandboxstore.Store
	// NetNSDir is the directory where sandbox network namespaces are bind-mounted, one file per
	// sandbox named by its ID. Required. The server owns every file in it.
	NetNSDir string
	// StateDir is the directory whose filesystem ImageFsInfo reports; empty means NetNSDir's
	// parent.
	StateDir string
	// Version is the runtime version the Version RPC reports.
	Version string
	// CleanupTimeout bounds the rollback of a failed set-up and each teardown done by Recover;
	// zero means DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// StatusInfo, if set, adds entries to the verbose answer of the Status RPC; each value is
	// encoded as JSON. It must be safe for concurrent use.
	StatusInfo func() map[string]any
}

// Server implements the CRI RuntimeService (pod sandboxes only) and an ImageService without
// images. Its methods are safe for concurrent use.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	cfg Config

	// sandboxLocks serializes RunPodSandbox, StopPodSandbox and RemovePodSandbox of one sandbox.
	sandboxLocks keylock.Map
}

// New returns a Server. It does no I/O; call Recover before serving.
func New(cfg Config) (*Server, error) {
	if cfg.Network == nil || cfg.Store == nil || cfg.NetNSDir == "" {
		return nil, errors.New("criserver: Network, Store and NetNSDir are required")
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	return &Server{cfg: cfg}, nil
}

// Register registers the RuntimeService, the ImageService and the admin service with
// g. Build g with ServerOptions() so that unsupported RPCs get a clear answer and every call is
// logged.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, newImageService(s.cfg))
	g.RegisterService(&adminServiceDesc, s)
}

// ServerOptions returns the gRPC server options the CRI service needs: interceptors that answer
// every RPC the server does not implement with codes.Unimplemented and a message saying so, and
// that give each call's context logger with the RPC's name and log failed calls once. gRPC
// starts every call from a context of its own, so logger is how calls log where the
// server's caller wants.
func ServerOptions(logger klog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return unaryInterceptor(klog.NewContext(ctx, logger), req, info, handler)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return streamInterceptor(srv, loggingStream{ss, klog.NewContext(ss.Context(), logger)}, info, handler)
		}),
		// Stop waits for handlers, so a set-up cut off by a forced stop still rolls back before
		// the process exits.
		grpc.WaitForHandlers(true),
	}
}

// implemented lists the RPCs the server answers; any other RPC of a registered service gets
// codes.Unimplemented before its handler runs.
var implemented = map[string]bool{
	"/runtime.v1.RuntimeService/Version":             true,
	"/runtime.v1.RuntimeService/Status":              true,
	"/runtime.v1.RuntimeService/RunPodSandbox":       true,
	"/runtime.v1.RuntimeService/StopPodSandbox":      true,
	"/runtime.v1.RuntimeService/RemovePodSandbox":    true,
	"/runtime.v1.RuntimeService/PodSandboxStatus":    true,
	"/runtime.v1.RuntimeService/ListPodSandbox":      true,
	"/runtime.v1.RuntimeService/StreamPodSandboxes":  true,
	"/runtime.v1.RuntimeService/UpdateRuntimeConfig": true,
	adminGCMethod:    true,
	adminCheckMethod: true,

	// Stats, and what a runtime without containers or images can answer truthfully.
	"/runtime.v1.RuntimeService/PodSandboxStats":       true,
	"/runtime.v1.RuntimeService/ListPodSandboxStats":   true,
	"/runtime.v1.RuntimeService/StreamPodSandboxStats": true,
	"/runtime.v1.RuntimeService/ListContainers":        true,
	"/runtime.v1.RuntimeService/StreamContainers":      true,
	"/runtime.v1.RuntimeService/ContainerStatus":       true,
	"/runtime.v1.RuntimeService/ContainerStats":        true,
	"/runtime.v1.RuntimeService/ListContainerStats":    true,
	"/runtime.v1.RuntimeService/StreamContainerStats":  true,
	"/runtime.v1.ImageService/ListImages":              true,
	"/runtime.v1.ImageService/StreamImages":            true,
	"/runtime.v1.ImageService/ImageStatus":             true,
	"/runtime.v1.ImageService/ImageFsInfo":             true,
}

// unsupported is the error for an RPC cnishim does not implement.
func unsupported(fullMethod string) error {
	rpc := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	return status.Errorf(codes.Unimplemented, "cnishim runs network sandboxes only: %s is not supported", rpc)
}

func unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	logger := klog.FromContext(ctx).WithValues("rpc", info.FullMethod)
	if !implemented[info.FullMethod] {
		logger.V(4).Info("Refused unsupported RPC")
		return nil, unsupported(info.FullMethod)
	}
	ctx = klog.NewContext(ctx, logger)
	logger.V(5).Info("RPC", "request", req)
	resp, err := handler(ctx, req)
	if err != nil {
		logFailure(logger, err)
	} else {
		logger.V(5).Info("RPC done", "response", resp)
	}
	return resp, err
}

// loggingStream is a server stream whose context carries the server's logger.
type loggingStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s loggingStream) Context() context.Context { return s.ctx }

func streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !implemented[info.FullMethod] {
		return unsupported(info.FullMethod)
	}
	err := handler(srv, ss)
	if err != nil {
		logFailure(klog.FromContext(ss.Context()).WithValues("rpc", info.FullMethod), err)
	}
	return err
}

// logFailure logs a failed call once: as an error when something went wrong in cnishim or a
// plugin, at V(2) when the caller asked for something that cannot be (an unknown sandbox, a
// reserved name, a network not ready yet), which clients do routinely.
func logFailure(logger klog.Logger, err error) {
	switch status.Code(err) {
	case codes.NotFound, codes.AlreadyExists, codes.InvalidArgument, codes.FailedPrecondition, codes.Canceled:
		logger.V(2).Info("RPC refused", "err", err)
	default:
		logger.Error(err, "RPC failed")
	}
}

// Version returns the runtime's name and version.
func (s *Server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       RuntimeName,
		RuntimeVersion:    s.cfg.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports RuntimeReady (always true) and NetworkReady from the network plugin. The
// verbose answer holds the chosen network ("config"), the reason it is not ready
// ("lastLoadError"), every skipped config file with its reason ("skipped"), the networks a pod
// may select ("selectableNetworks"), and the entries of Config.StatusInfo.
func (s *Server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	netCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.cfg.Network.Status(ctx); err != nil {
		netCond.Status = false
		netCond.Reason = "NetworkPluginNotReady"
		netCond.Message = "Network plugin returns error: " + err.Error()
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			netCond,
		}},
	}
	if !req.GetVerbose() {
		return resp, nil
	}
	info := map[string]string{}
	put := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return status.Errorf(codes.Internal, "status info %s: %v", key, err)
		}
		info[key] = string(b)
		return nil
	}
	snap := s.cfg.Network.Snapshot()
	if snap != nil {
		if snap.Default != nil {
			if err := put("config", NetworkInfoOf(snap.Default)); err != nil {
				return nil, err
			}
		}
		if snap.Err != nil {
			info["lastLoadError"] = snap.Err.Error()
		}
		skipped := map[string]string{}
		for _, sk := range snap.Skipped {
			skipped[sk.File] = fmt.Sprint(sk.Reason)
		}
		if err := put("skipped", skipped); err != nil {
			return nil, err
		}
		if err := put("selectableNetworks", SelectableNetworks(snap)); err != nil {
			return nil, err
		}
	}
	if s.cfg.StatusInfo != nil {
		for k, v := range s.cfg.StatusInfo() {
			if err := put(k, v); err != nil {
				return nil, err
			}
		}
	}
	resp.Info = info
	return resp, nil
}

// SelectableNetworks returns the names of the networks a pod may select with the
// k8s.v1.cni.cncf.io/networks annotation: every valid network of snap, each name once (a name in
// several files means the first). It is never nil.
func SelectableNetworks(snap *confwatch.Snapshot) []string {
	out := []string{}
	for _, n := range snap.Networks {
		if !slices.Contains(out, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

// NetworkInfo is the JSON form of a network in status output.
type NetworkInfo struct {
	File         string   `json:"file"`
	Name         string   `json:"name"`
	CNIVersion   string   `json:"cniVersion"`
	Plugins      []string `json:"plugins"`
	Capabilities []string `json:"capabilities"`
}

// NetworkInfoOf returns the status form of n.
func NetworkInfoOf(n *confwatch.Network) NetworkInfo {
	return NetworkInfo{
		File:         n.File,
		Name:         n.Name,
		CNIVersion:   n.CNIVersion,
		Plugins:      append([]string{}, n.PluginTypes...),
		Capabilities: append([]string{}, n.Capabilities...),
	}
}

// UpdateRuntimeConfig passes the node's pod CIDRs (comma-separated for dual stack, as the
// kubelet sends them) to the network plugin. An empty CIDR leaves the plugin's CIDRs alone.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := strings.TrimSpace(req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	var cidrs []string
	for _, c := range strings.Split(cidr, ",") {
		cidrs = append(cidrs, strings.TrimSpace(c))
	}
	if err := s.cfg.Network.SetPodCIDRs(cidrs...); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "pod CIDR %q: %v", cidr, err)
	}
	klog.FromContext(ctx).V(2).Info("Pod CIDRs updated", "podCIDRs", cidrs)
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// grpcError converts an error from the network plugin or the store into a gRPC status with the
// code a CRI client branches on. prefix says what was being done.
func grpcError(prefix string, err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, cninetwork.ErrNotReady):
		code = codes.FailedPrecondition
	case errors.Is(err, cninetwork.ErrInvalidPod):
		code = codes.InvalidArgument
	case errors.Is(err, cninetwork.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, sandboxstore.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, sandboxstore.ErrAmbiguous):
		code = codes.InvalidArgument
	case errors.Is(err, sandboxstore.ErrNameReserved), errors.Is(err, sandboxstore.ErrExists):
		code = codes.AlreadyExists
	}
	return status.Errorf(code, "%s: %v", prefix, err)
}
