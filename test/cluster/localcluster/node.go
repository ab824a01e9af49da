//go:build linux

package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// readyTimeout bounds how long StartServer waits for a server to answer.
const readyTimeout = 2 * time.Minute

// stopGrace is how long StopServer waits after SIGTERM before SIGKILL.
const stopGrace = 45 * time.Second

// NetnsCommand is a command that runs name inside the network namespace at netnsPath (through
// nsenter --net, so in the caller's mount namespace: namespace bind mounts stay visible).
func NetnsCommand(ctx context.Context, netnsPath, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netnsPath, name}, args...)...)
}

// Command is a command that runs args[0] inside the node's namespace.
func (n *Node) Command(ctx context.Context, args ...string) *exec.Cmd {
	return NetnsCommand(ctx, n.NetNSPath, args[0], args[1:]...)
}

// Exec runs args inside the node's namespace and returns its combined output; the error
// holds the output too.
func (n *Node) Exec(ctx context.Context, args ...string) (string, error) {
	out, err := n.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("node %s: %s: %w\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// StartServer starts the node's `cnishim serve` inside its namespace, in a process group of
// its own with its output appended to Log, and waits until it answers and reports its network
// ready. It is an error if the node's server already runs.
func (n *Node) StartServer(ctx context.Context) error {
	c := n.cluster
	c.mu.Lock()
	old := n.server
	c.mu.Unlock()
	if old != nil && old.alive() {
		return fmt.Errorf("node %s: server already runs (pid %d)", n.Name, old.PID)
	}
	logf, err := os.OpenFile(n.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== localcluster: starting cnishim serve at %s\n", time.Now().Format(time.RFC3339Nano))
	args := append([]string{"serve",
		"--listen", "unix://" + n.Socket,
		"--cni-conf-dir", n.ConfDir,
		"--cni-bin-dir", c.cniBinDirs(),
		"--cni-cache-dir", n.CacheDir,
		"--state-dir", n.StateDir,
	}, c.Config.ServeArgs...)
	// Not CommandContext: the server outlives ctx (and, for the command, this process).
	cmd := exec.Command("nsenter", append([]string{"--net=" + n.NetNSPath, c.Config.Cnishim}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("node %s: start server: %w", n.Name, err)
	}
	c.mu.Lock()
	n.server = p
	err = c.save()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := n.waitReady(ctx, p); err != nil {
		return fmt.Errorf("node %s: %w (log: %s)", n.Name, err, n.Log)
	}
	return nil
}

// waitReady waits until the server on the node's socket answers Version and reports
// NetworkReady, failing at once if p exits.
func (n *Node) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	var last error
	for {
		last = ready(ctx, rt)
		if last == nil {
			return nil
		}
		if !p.alive() {
			return fmt.Errorf("server exited at start: %w", last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w", errors.Join(last, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ready(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		return err
	}
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.GetType() == runtimeapi.NetworkReady {
			if cond.GetStatus() {
				return nil
			}
			return fmt.Errorf("network not ready: %s: %s", cond.GetReason(), cond.GetMessage())
		}
	}
	return errors.New("no NetworkReady condition")
}

// ServerPID is the PID of the node's server, 0 if none runs.
func (n *Node) ServerPID() int {
	n.cluster.mu.Lock()
	defer n.cluster.mu.Unlock()
	if n.server == nil || !n.server.alive() {
		return 0
	}
	return n.server.PID
}

// StopServer stops the node's server gracefully (SIGTERM, and SIGKILL to its process group
// if it has not exited within 45s) and returns once it has exited. Pods stay: a server started
// again finds them.
func (n *Node) StopServer() error {
	return n.endServer(func(p *process) error { return p.stop(stopGrace) })
}

// KillServer kills the node's server and whatever plugins it runs (SIGKILL to its process
// group), as a crash would, and returns once it has exited.
func (n *Node) KillServer() error {
	return n.endServer((*process).kill)
}

func (n *Node) endServer(end func(*process) error) error {
	c := n.cluster
	c.mu.Lock()
	p := n.server
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := end(p); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.server == p {
		n.server = nil
	}
	return c.save()
}

// RemovePods stops and removes, through the node's server, every pod sandbox it has, so
// that the plugins' DEL undoes what their ADD did (as `crictl rmp -af` does). With no server
// running it does nothing.
func (n *Node) RemovePods(ctx context.Context) error {
	if n.ServerPID() == 0 {
		return nil
	}
	conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("node %s: list pods: %w", n.Name, err)
	}
	var errs []error
	for _, sb := range list.GetItems() {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("node %s: stop pod %s: %w", n.Name, sb.GetId(), err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("node %s: remove pod %s: %w", n.Name, sb.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

// CrictlCommand is a command running the crictl binary at crictl against the node's server
// (through its CrictlConfig, so no global crictl config is read).
func (n *Node) CrictlCommand(ctx context.Context, crictl string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, crictl, append([]string{"--config", n.CrictlConfig}, args...)...)
	return cmd
}
