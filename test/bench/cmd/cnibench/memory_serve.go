//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serveMemory is the RSS of a running `cnishim serve`, read from /proc/<pid>/status.
type serveMemory struct {
	Sandboxes   int
	RSS, Peak   int64 // KiB
	RunDuration time.Duration
}

// measureServe starts `cnishim serve` (see startServeNode), runs n sandboxes through its CRI
// endpoint, and reads the server's RSS with none and with n live, after settle. Everything
// is removed afterwards.
func measureServe(ctx context.Context, cnishim, pluginDir string, n int, settle time.Duration) (_ []serveMemory, retErr error) {
	node, err := startServeNode(ctx, cnishim, pluginDir, nil)
	if err != nil {
		return nil, err
	}
	defer func() { retErr = errors.Join(retErr, node.close(ctx)) }()

	var out []serveMemory
	read := func(live int, d time.Duration) error {
		time.Sleep(settle)
		rss, peak, err := node.memory()
		out = append(out, serveMemory{Sandboxes: live, RSS: rss, Peak: peak, RunDuration: d})
		return err
	}
	if err := read(0, 0); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := node.runSandboxes(ctx, n); err != nil {
		return nil, err
	}
	if err := read(n, time.Since(start)); err != nil {
		return nil, err
	}
	return out, nil
}

// serveNode is a `cnishim serve` on a scratch state dir and a network of the cnitest plugin
// delegating to host-local (each sandbox gets a network namespace, an address and a libcni
// cache entry; no veth), with the sandboxes the benchmark ran through its CRI endpoint.
type serveNode struct {
	cnishim string
	args    []string // of `cnishim serve`, the same at every start
	root    string   // scratch dir holding everything the server uses
	sock    string
	cmd     *exec.Cmd
	stderr  *syncBuffer // the server's log, over every start
	conn    *grpc.ClientConn
	rt      runtimeapi.RuntimeServiceClient
	ids     []string // sandboxes run, to stop and remove at close
}

// startServeNode writes the network config and starts the server on a fresh scratch dir,
// passing extraArgs to `cnishim serve`, and waits until it answers on its CRI socket. Call
// close, also after a failure of a later step.
func startServeNode(ctx context.Context, cnishim, pluginDir string, extraArgs []string) (_ *serveNode, retErr error) {
	root, err := os.MkdirTemp("", "cnibench-serve-")
	if err != nil {
		return nil, err
	}
	s := &serveNode{cnishim: cnishim, root: root, sock: filepath.Join(root, "cri.sock"), stderr: &syncBuffer{}}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, s.close(ctx))
		}
	}()
	confDir := filepath.Join(root, "net.d")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return s, err
	}
	behavior := filepath.Join(root, "cnitest.json")
	if err := os.WriteFile(behavior, []byte(`{"commands":{"ADD":{"delegateIPAM":true},"DEL":{"delegateIPAM":true}}}`), 0o600); err != nil {
		return s, err
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cnibench-mem","plugins":[{"type":"cnitest","behavior":%q,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.195.0.0/16"}]],"dataDir":%q}}]}`,
		behavior, filepath.Join(root, "ipam"))
	if err := os.WriteFile(filepath.Join(confDir, "10-mem.conflist"), []byte(conf), 0o600); err != nil {
		return s, err
	}
	s.args = append([]string{"serve",
		"--listen", "unix://" + s.sock, "--state-dir", s.stateDir(),
		"--cni-conf-dir", confDir, "--cni-bin-dir", pluginDir, "--cni-cache-dir", filepath.Join(root, "cache")},
		extraArgs...)
	// A short reconnect backoff, so that a client waiting for a restarted server sees it
	// within milliseconds of its socket answering.
	bc := backoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = 5*time.Millisecond, 10*time.Millisecond
	s.conn, err = grpc.NewClient("unix://"+s.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second}))
	if err != nil {
		return s, err
	}
	s.rt = runtimeapi.NewRuntimeServiceClient(s.conn)
	if err := s.start(ctx); err != nil {
		return s, err
	}
	if err := waitServing(ctx, s.rt); err != nil {
		return s, fmt.Errorf("cnishim serve: %w\n%s", err, tail(s.stderr.String(), 20))
	}
	return s, nil
}

func (s *serveNode) stateDir() string { return filepath.Join(s.root, "state") }

// start starts the server process; it does not wait for it to serve.
func (s *serveNode) start(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, s.cnishim, s.args...)
	cmd.Stderr = s.stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cnishim serve: %w", err)
	}
	s.cmd = cmd
	return nil
}

// kill SIGKILLs the server and waits for it to be gone.
func (s *serveNode) kill() error {
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill cnishim serve: %w", err)
	}
	_ = s.cmd.Wait() // "signal: killed"
	s.cmd = nil
	return nil
}

// memory reads the server's VmRSS and VmHWM in KiB.
func (s *serveNode) memory() (rss, peak int64, err error) {
	return procMemory(s.cmd.Process.Pid)
}

// runSandboxes runs n sandboxes through the CRI endpoint, one after the other.
func (s *serveNode) runSandboxes(ctx context.Context, n int) error {
	for i := range n {
		resp, err := s.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("mem-%d", i), Namespace: "cnibench", Uid: fmt.Sprintf("%032x", i+1)},
		}})
		if err != nil {
			return fmt.Errorf("run pod sandbox %d: %w", i, err)
		}
		s.ids = append(s.ids, resp.GetPodSandboxId())
	}
	return nil
}

// close stops and removes every sandbox run (starting the server again if it is not
// running), stops the server with SIGTERM, removes any network namespace left, and removes
// the scratch dir.
func (s *serveNode) close(ctx context.Context) (retErr error) {
	ctx = context.WithoutCancel(ctx)
	if len(s.ids) > 0 && s.cmd == nil && s.args != nil {
		if err := s.start(ctx); err != nil {
			retErr = err
		} else if err := waitServing(ctx, s.rt); err != nil {
			retErr = err
		}
	}
	if s.cmd != nil {
		for _, id := range s.ids {
			_, err1 := s.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			_, err2 := s.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			if err := errors.Join(err1, err2); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("sandbox %s: %w", id, err))
			}
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		if err := s.cmd.Wait(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cnishim serve: %w", err))
		}
		s.cmd = nil
	}
	if retErr != nil {
		retErr = fmt.Errorf("%w\ncnishim serve log:\n%s", retErr, tail(s.stderr.String(), 20))
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
	// The server removes what it made; this catches what a failure left.
	if left, _ := netns.Mounted(filepath.Join(s.stateDir(), "netns")); len(left) > 0 {
		for _, p := range left {
			_ = netns.Remove(p)
		}
		retErr = errors.Join(retErr, fmt.Errorf("cnishim serve left %d network namespaces", len(left)))
	}
	return errors.Join(retErr, os.RemoveAll(s.root))
}

func waitServing(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving after 30s: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func procMemory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return host.ParseMemory(b)
}

// syncBuffer is a buffer safe to read while a process writes its output into it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
