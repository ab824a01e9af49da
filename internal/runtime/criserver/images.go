//go:build linux

package criserver

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageService is the ImageService of a runtime that has no images: ListImages is empty,
// ImageStatus finds nothing and ImageFsInfo reports the filesystem of the server's state
// directory. PullImage and RemoveImage answer codes.Unimplemented (through the interceptor), so
// that crictl pull fails at once with a clear message instead of "unknown service".
type imageService struct {
	runtimeapi.UnimplementedImageServiceServer
	// stateDir is the directory whose filesystem ImageFsInfo reports.
	stateDir string
}

func newImageService(cfg Config) imageService {
	dir := cfg.StateDir
	if dir == "" {
		dir = filepath.Dir(cfg.NetNSDir)
	}
	return imageService{stateDir: dir}
}

// ListImages returns no images: cnishim has none.
func (imageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	return &runtimeapi.ListImagesResponse{}, nil
}

// StreamImages ends the stream at once: cnishim has no images.
func (imageService) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	return nil
}

// ImageStatus answers with no image and no error for every image, as containerd does for an
// image it does not have.
func (imageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	return &runtimeapi.ImageStatusResponse{}, nil
}

// ImageFsInfo reports one image filesystem: the one holding the state directory, named by
// that directory (as containerd names its snapshotter's root), with the bytes and inodes in use
// on the whole filesystem, since cnishim stores no images of its own to count.
func (is imageService) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	usage, err := fsUsage(is.stateDir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "image fs info: %v", err)
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{usage}}, nil
}

// fsUsage returns the usage of the filesystem holding dir.
func fsUsage(dir string) (*runtimeapi.FilesystemUsage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: dir},
		UsedBytes:  &runtimeapi.UInt64Value{Value: (st.Blocks - st.Bfree) * uint64(st.Bsize)},
		InodesUsed: &runtimeapi.UInt64Value{Value: st.Files - st.Ffree},
	}, nil
}
