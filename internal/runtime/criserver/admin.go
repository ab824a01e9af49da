//go:build linux

package criserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The CRI has no GC call, so the server offers one more gRPC service on the same socket,
// cnishim.admin.v1.Admin, with one method: GC. It takes an empty message and answers a Struct
// {"validSandboxIDs": [...]}. It is served by the server, not run by the client, because only
// the server can hold RunPodSandbox back while the valid set is taken (see Server.GC).
const (
	adminServiceName = "cnishim.admin.v1.Admin"
	adminGCMethod    = "/" + adminServiceName + "/GC"
)

// adminServer is the interface the admin service's handlers call.
type adminServer interface {
	GC(ctx context.Context) ([]string, error)
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
	}},
	Metadata: "cnishim/admin.proto",
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
