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
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/netns"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serveMemory is the RSS of a running `cnishim serve`, read from /proc/<pid>/status.
type serveMemory struct {
	Sandboxes   int
	RSS, Peak   int64 // KiB
	RunDuration time.Duration
}

// measureServe starts `cnishim serve` on a scratch state dir and a network of the cnitest
// plugin delegating to host-local (each sandbox gets a network namespace, an address and a
// libcni cache entry; no veth), runs n sandboxes through its CRI endpoint, and reads the
// server's RSS with none and with n live, after settle. Everything is removed afterwards.
func measureServe(ctx context.Context, cnishim, pluginDir string, n int, settle time.Duration) (_ []serveMemory, retErr error) {
	root, err := os.MkdirTemp("", "cnibench-serve-")
	if err != nil {
		return nil, err
	}
	stateDir := filepath.Join(root, "state")
	defer func() {
		// The server removes what it made; this catches what a failure left.
		if left, _ := netns.Mounted(filepath.Join(stateDir, "netns")); len(left) > 0 {
			for _, p := range left {
				_ = netns.Remove(p)
			}
			retErr = errors.Join(retErr, fmt.Errorf("cnishim serve left %d network namespaces", len(left)))
		}
		_ = os.RemoveAll(root)
	}()
	confDir := filepath.Join(root, "net.d")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return nil, err
	}
	behavior := filepath.Join(root, "cnitest.json")
	if err := os.WriteFile(behavior, []byte(`{"commands":{"ADD":{"delegateIPAM":true},"DEL":{"delegateIPAM":true}}}`), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cnibench-mem","plugins":[{"type":"cnitest","behavior":%q,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.195.0.0/16"}]],"dataDir":%q}}]}`,
		behavior, filepath.Join(root, "ipam"))
	if err := os.WriteFile(filepath.Join(confDir, "10-mem.conflist"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	sock := filepath.Join(root, "cri.sock")
	cmd := exec.CommandContext(ctx, cnishim, "serve",
		"--listen", "unix://"+sock, "--state-dir", stateDir,
		"--cni-conf-dir", confDir, "--cni-bin-dir", pluginDir, "--cni-cache-dir", filepath.Join(root, "cache"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cnishim serve: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil && retErr != nil {
			retErr = fmt.Errorf("%w\ncnishim serve: %v\n%s", retErr, err, tail(stderr.String(), 20))
		}
	}()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	if err := waitServing(ctx, rt); err != nil {
		return nil, fmt.Errorf("cnishim serve: %w\n%s", err, tail(stderr.String(), 20))
	}

	var out []serveMemory
	read := func(live int, d time.Duration) error {
		time.Sleep(settle)
		rss, peak, err := procMemory(cmd.Process.Pid)
		out = append(out, serveMemory{Sandboxes: live, RSS: rss, Peak: peak, RunDuration: d})
		return err
	}
	if err := read(0, 0); err != nil {
		return nil, err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			_, err1 := rt.StopPodSandbox(context.WithoutCancel(ctx), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			_, err2 := rt.RemovePodSandbox(context.WithoutCancel(ctx), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			if err := errors.Join(err1, err2); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("sandbox %s: %w", id, err))
			}
		}
	}()
	start := time.Now()
	for i := range n {
		resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("mem-%d", i), Namespace: "cnibench", Uid: fmt.Sprintf("%032x", i+1)},
		}})
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox %d: %w", i, err)
		}
		ids = append(ids, resp.GetPodSandboxId())
	}
	if err := read(n, time.Since(start)); err != nil {
		return nil, err
	}
	return out, nil
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

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
