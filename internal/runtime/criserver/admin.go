//go:build linux

package criserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/pkg/cninetwork"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The CRI has no GC or CHECK call, so the server offers one more gRPC service on the same
// socket, cnishim.admin.v1.Admin, defined here in Go (its messages are the protobuf well-known
// types, so it needs no .proto file of its own), with two methods:
//   - GC takes an empty message and answers a Struct {"validSandboxIDs": [...]}. It is served by
//     the server, not run by the client, because only the server knows which sandboxes exist
//     while it runs (see Server.GC).
//   - Check takes a Struct {"podSandboxId": ID or unique prefix} and answers an empty message
//     once CNI CHECK of every network of the sandbox passed, or the error saying which failed
//     (see Server.Check).
const (
	adminServiceName = "cnishim.admin.v1.Admin"
	adminGCMethod    = "/" + adminServiceName + "/GC"
	adminCheckMethod = "/" + adminServiceName + "/Check"
)

// adminServer is the interface the admin service's handlers call.
type adminServer interface {
	GC(ctx context.Context) ([]string, error)
	Check(ctx context.Context, id string) error
}

var adminServiceDesc = grpc.ServiceDesc{
	ServiceName: adminServiceName,
	HandlerType: (*adminServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "GC",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, req any) (any, error) {
				ids, err := srv.(adminServer).GC(ctx)
				if err != nil {
					return nil, status.Errorf(codes.Internal, "%v", err)
				}
				list := make([]any, len(ids))
				for i, id := range ids {
					list[i] = id
				}
				return structpb.NewStruct(map[string]any{"validSandboxIDs": list})
			}
			if interceptor == nil {
				return handler(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: adminGCMethod}, handler)
		},
	}, {
		MethodName: "Check",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(structpb.Struct)
			if err := dec(in); err != nil {
				return nil, err
			}
			handler := func(ctx context.Context, req any) (any, error) {
				id := req.(*structpb.Struct).GetFields()["podSandboxId"].GetStringValue()
				if err := srv.(adminServer).Check(ctx, id); err != nil {
					return nil, err
				}
				return new(emptypb.Empty), nil
			}
			if interceptor == nil {
				return handler(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: adminCheckMethod}, handler)
		},
	}},
}

// CallGC asks the server at the other end of conn for one CNI GC pass and returns the valid
// sandbox IDs it used.
func CallGC(ctx context.Context, conn grpc.ClientConnInterface) ([]string, error) {
	out := new(structpb.Struct)
	if err := conn.Invoke(ctx, adminGCMethod, new(emptypb.Empty), out); err != nil {
		return nil, fmt.Errorf("cnishim GC: %w", err)
	}
	var ids []string
	for _, v := range out.GetFields()["validSandboxIDs"].GetListValue().GetValues() {
		ids = append(ids, v.GetStringValue())
	}
	return ids, nil
}

// CallCheck asks the server at the other end of conn to run CNI CHECK on every network of the
// sandbox id (an ID or a unique prefix of one).
func CallCheck(ctx context.Context, conn grpc.ClientConnInterface, id string) error {
	in, err := structpb.NewStruct(map[string]any{"podSandboxId": id})
	if err != nil {
		return err
	}
	return conn.Invoke(ctx, adminCheckMethod, in, new(emptypb.Empty))
}

// Check runs CNI CHECK on every network of the sandbox id (an ID or a unique prefix): the
// plugins say whether what they set up for it is still as they left it. The error is a gRPC
// status: NotFound for an unknown sandbox or one with no network attached (host network,
// stopped), FailedPrecondition when its network namespace is gone, otherwise the plugins'
// error naming the network that failed.
func (s *Server) Check(ctx context.Context, id string) error {
	const what = "check pod sandbox"
	rec, err := s.resolve(id)
	if err != nil {
		return grpcError(what, err)
	}
	if rec.HostNetwork || rec.State != sandboxstore.StateReady {
		return status.Errorf(codes.NotFound, "%s %s: no network attached (state %s, host network %v)", what, rec.ID, rec.State, rec.HostNetwork)
	}
	pod, _ := podOf(rec) // CHECK goes by what was cached at set-up; only the ID and netns are read
	switch err := s.cfg.Network.CheckPod(ctx, pod); {
	case err == nil:
		return nil
	case errors.Is(err, cninetwork.ErrUnknownSandbox):
		return status.Errorf(codes.NotFound, "%s %s: %v", what, rec.ID, err)
	case errors.Is(err, cninetwork.ErrInvalidPod):
		return status.Errorf(codes.FailedPrecondition, "%s %s: %v", what, rec.ID, err)
	default:
		return grpcError(fmt.Sprintf("%s %s", what, rec.ID), err)
	}
}
