//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cnishim/cnishim/internal/runtime/criserver"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
)

const serveSynopsis = `Serves the CRI v1 RuntimeService and ImageService on a unix socket (mode 0600): crictl and the
kubelet create, inspect, stop and remove pods whose network cnishim sets up in a network
namespace under <state-dir>/netns. It runs no containers and holds no images, and the calls
that only read say so: no containers, no images, container status NotFound; ImageFsInfo
reports the state dir's filesystem and pod sandbox stats each pod's interface counters.
Calls that would pull an image or create, start or change a container answer Unimplemented.

Sandbox records live in <state-dir>/sandboxes and survive restarts; what the plugin attached
for each pod is recorded in <state-dir>/network. One server holds a state dir: a second one on
it exits naming the holder. Every path flag is made absolute. At start, a sandbox whose set-up
a crash cut off is torn down and listed NOTREADY (remove it with crictl rmp), and one CNI GC
pass runs with every sandbox not NOTREADY as the valid set; it deletes only attachments this
server recorded, never other runtimes' ones in the shared CNI cache dir, nor those of networks
with "disableGC". SIGTERM or SIGINT stops taking new calls and lets calls in flight finish
within --shutdown-grace.`

type serveFlags struct {
	cni              cniFlags
	listen           string
	stateDir         string
	podCIDR          string
	metricsAddr      string
	operationTimeout time.Duration
	maxPodNetworks   int
	shutdownGrace    time.Duration
	loopback         loopbackFlag
	admission        admissionFlags
	logs             logFlags
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := newFlagSet("serve", stderr, serveSynopsis)
	f.cni.register(fs, true)
	fs.StringVar(&f.listen, "listen", defaultListen, "CRI endpoint to serve, unix:///absolute/path")
	fs.StringVar(&f.stateDir, "state-dir", defaultStateDir, "directory for sandbox records and network namespaces (created mode 0700)")
	fs.StringVar(&f.podCIDR, "pod-cidr", "", "the node's pod CIDRs, comma-separated for dual stack (passed to plugins as ipRanges)")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", "", "address for Prometheus /metrics over HTTP, e.g. 127.0.0.1:9437 (default off)")
	fs.DurationVar(&f.operationTimeout, "operation-timeout", cninetwork.DefaultOperationTimeout, "cap on one pod network operation (every plugin exec in it)")
	fs.IntVar(&f.maxPodNetworks, "max-pod-networks", cninetwork.DefaultMaxPodNetworks, "most networks one pod may be attached to, the default network included; a pod asking for more is refused with InvalidArgument")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "on SIGTERM/SIGINT, how long calls in flight may run before they are cancelled")
	fs.Var(&f.loopback, "loopback", "how the pod's lo is brought up: in-process, plugin or off (default in-process)")
	f.admission.register(fs)
	f.logs = addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := durationAtLeast("operation-timeout", f.operationTimeout, time.Second); err != nil {
		return err
	}
	if err := durationAtLeast("shutdown-grace", f.shutdownGrace, 0); err != nil {
		return err
	}
	if f.maxPodNetworks < 1 {
		return fmt.Errorf("%w: --max-pod-networks %d: must be at least 1", errUsage, f.maxPodNetworks)
	}
	sockPath, err := unixPath(f.listen)
	if err != nil {
		return err
	}
	if err := absPaths(&f.stateDir, &f.cni.confDir, &f.cni.binDirs, &f.cni.cacheDir); err != nil {
		return err
	}
	return serve(ctx, &f, sockPath)
}

func serve(ctx context.Context, f *serveFlags, sockPath string) (retErr error) {
	ctx = f.logs.context(ctx)
	logger := klog.FromContext(ctx)

	// Nothing is created before these checks: another server on the socket, or on the state
	// dir, is refused first.
	if err := checkSocketFree(sockPath); err != nil {
		return err
	}
	unlock, err := lockStateDir(f.stateDir, stateHolder{PID: os.Getpid(), Command: "cnishim serve", Listen: "unix://" + sockPath})
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Chmod(f.stateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	opts := f.cni.pluginOptions()
	opts = append(opts,
		// The plugin's records of what it attached are this server's own, beside its
		// sandbox records: the CNI cache dir is shared with every runtime on the node.
		cninetwork.WithStateDir(networkRecordsDir(f.stateDir)),
		cninetwork.WithOperationTimeout(f.operationTimeout),
		cninetwork.WithMaxPodNetworks(f.maxPodNetworks),
		cninetwork.WithRegisterer(reg),
	)
	opts = append(opts, f.loopback.options()...)
	opts = append(opts, f.admission.pluginOptions()...)
	plugin, err := cninetwork.New(opts...)
	if err != nil {
		return err
	}
	if err := plugin.SetPodCIDRs(splitList(f.podCIDR)...); err != nil {
		return fmt.Errorf("--pod-cidr: %w", err)
	}
	// The plugin's watcher outlives the signal: calls in flight during the grace period still
	// see config changes. It stops after the gRPC server has.
	pluginCtx, stopPlugin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPlugin()
	if err := plugin.Run(pluginCtx); err != nil {
		return fmt.Errorf("network plugin: %w", err)
	}
	defer func() {
		stopPlugin()
		if err := plugin.Close(); err != nil && retErr == nil {
			retErr = fmt.Errorf("network plugin: %w", err)
		}
	}()
	if err := plugin.Status(ctx); err != nil {
		// An error, as the kubelet logs "Container runtime network not ready": pod set-ups
		// fail until a valid config appears (-v=2 logs when one does).
		logger.Error(err, "Network not ready")
	}

	store, err := sandboxstore.Open(filepath.Join(f.stateDir, "sandboxes"))
	if err != nil {
		return err
	}
	srv, err := criserver.New(criserver.Config{
		Network:        plugin,
		Store:          store,
		NetNSDir:       filepath.Join(f.stateDir, "netns"),
		StateDir:       f.stateDir,
		Version:        version,
		CleanupTimeout: f.operationTimeout,
		StatusInfo:     f.admission.statusInfo(plugin),
	})
	if err != nil {
		return err
	}
	if err := registerServerMetrics(reg, store); err != nil {
		return err
	}
	if err := srv.Recover(ctx); err != nil {
		// Serve anyway: the sandboxes that failed stay NOTREADY and are torn down again when
		// they are stopped or removed.
		logger.Error(err, "Recovering sandboxes after start")
	}

	lis, err := listenUnix(sockPath)
	if err != nil {
		return err
	}
	g := grpc.NewServer(criserver.ServerOptions(logger)...)
	srv.Register(g)

	var metricsSrv *http.Server
	if f.metricsAddr != "" {
		ml, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			_ = lis.Close()
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(ml) }()
		logger.Info("Serving metrics", "address", ml.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	logger.Info("Serving CRI", "endpoint", "unix://"+sockPath, "version", version, "stateDir", f.stateDir,
		"confDir", f.cni.confDir, "binDirs", f.cni.binDirList(), "cacheDir", f.cni.cacheDir)

	select {
	case err := <-serveErr:
		retErr = fmt.Errorf("serve %s: %w", sockPath, err)
	case <-ctx.Done():
		logger.Info("Shutting down: finishing calls in flight", "grace", f.shutdownGrace)
	}
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(f.shutdownGrace):
		logger.Info("Grace period over: cancelling calls in flight")
		g.Stop() // waits for the handlers, so cut-off set-ups finish their rollback
		<-stopped
	}
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	logger.Info("Stopped")
	return retErr
}

// unixPath returns the socket path of a unix:// endpoint.
func unixPath(endpoint string) (string, error) {
	p, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok || !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: endpoint %q: want unix:///absolute/path", errUsage, endpoint)
	}
	return filepath.Clean(p), nil
}

// dialServer returns a client connection to the server on the unix socket sock. It connects
// lazily, on the first call.
func dialServer(sock string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// dialListen returns a client connection to the server on the --listen endpoint listen, with
// ctx bounded by timeout and logging as logs says, and the function that closes both.
func dialListen(ctx context.Context, listen string, timeout time.Duration, logs logFlags) (context.Context, *grpc.ClientConn, func(), error) {
	sock, err := unixPath(listen)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := dialServer(sock)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(logs.context(ctx), timeout)
	return ctx, conn, func() { cancel(); conn.Close() }, nil
}

// checkSocketFree fails if a server answers on the unix socket at path, or path is something
// other than a socket. It creates and removes nothing.
func checkSocketFree(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("socket %s: another server is listening on it", path)
	}
	return nil
}

// listenUnix listens on a unix socket at path with mode 0600. A missing directory is created
// with mode 0700. A stale socket (nothing accepts on it) is removed; a live one, or a file that
// is not a socket, is an error. The socket's mode is set on it before it is bound (Linux
// creates the file with the socket's mode less the umask), so the file is never reachable
// with wider permissions, and the process-wide umask, which plugins started meanwhile would
// inherit, is left alone. Closing the listener removes the socket.
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("socket dir: %w", err)
		}
	}
	if err := checkSocketFree(path); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stale socket: %w", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // FileListener dups the descriptor
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("socket %s: bind: %w", path, err)
	}
	var lis net.Listener
	err = unix.Listen(fd, unix.SOMAXCONN)
	if err == nil {
		lis, err = net.FileListener(f)
	}
	if err == nil {
		err = os.Chmod(path, 0o600) // in case a kernel ignores the socket's own mode
	}
	if err != nil {
		if lis != nil {
			_ = lis.Close()
		}
		_ = os.Remove(path)
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return &unlinkingListener{Listener: lis, path: path}, nil
}

// unlinkingListener removes its socket file when closed.
type unlinkingListener struct {
	net.Listener
	path string
	once sync.Once
}

func (l *unlinkingListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// registerServerMetrics adds gauges of the sandboxes the server holds, by state.
func registerServerMetrics(reg prometheus.Registerer, store *sandboxstore.Store) error {
	for _, st := range []sandboxstore.State{sandboxstore.StateCreating, sandboxstore.StateReady, sandboxstore.StateStopping, sandboxstore.StateNotReady} {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "cnishim_pod_sandboxes",
			Help:        "Pod sandboxes the CRI server holds, by state.",
			ConstLabels: prometheus.Labels{"state": string(st)},
		}, func() float64 {
			n := 0
			for _, r := range store.List() {
				if r.State == st {
					n++
				}
			}
			return float64(n)
		})
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}
