//go:build linux

package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"
)

// A Network that runs daemons (flannel: etcd and flanneld) implements some of these as well.
type (
	// binDirNetwork needs CNI plugins from dirs other than Config.CNIBinDir.
	binDirNetwork interface {
		binDirs(c *Cluster) []string
	}
	// prereqNetwork needs these files (plugins, daemons) before Up makes anything; a Network
	// that does not implement it needs kindnet's plugins.
	prereqNetwork interface {
		prerequisites(c *Cluster) []string
	}
	// daemonNetwork restarts its daemon on one node (Node.RestartNetworkDaemon).
	daemonNetwork interface {
		restartDaemon(ctx context.Context, n *Node) error
	}
)

// startDaemon starts a network daemon on the machine (netnsPath ""), or inside netnsPath, in a
// process group of its own with its output appended to logPath, and records it in the state
// file under name: on the node n, or on the cluster when n is nil. Down stops it.
func (c *Cluster) startDaemon(n *Node, name, netnsPath, logPath string, argv ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== localcluster: starting %s at %s\n", name, time.Now().Format(time.RFC3339Nano))
	if netnsPath != "" {
		argv = append([]string{"nsenter", "--net=" + netnsPath}, argv...)
	}
	// Not CommandContext: a daemon outlives the context of Up (and, for the command, this
	// process).
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := &c.daemons
	if n != nil {
		ds = &n.daemons
	}
	if *ds == nil {
		*ds = map[string]*process{}
	}
	(*ds)[name] = p
	return p, c.save()
}

// stopDaemon stops the daemon name of n (of the cluster when n is nil), if it runs: SIGTERM,
// and SIGKILL to its group after grace.
func (c *Cluster) stopDaemon(n *Node, name string, grace time.Duration) error {
	c.mu.Lock()
	ds := c.daemons
	if n != nil {
		ds = n.daemons
	}
	p := ds[name]
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.stop(grace); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ds[name] == p {
		delete(ds, name)
	}
	return c.save()
}

// stopDaemons stops every node's daemons, then the cluster's.
func (c *Cluster) stopDaemons() error {
	var errs []error
	for _, n := range append(slices.Clone(c.Nodes), nil) {
		c.mu.Lock()
		ds := c.daemons
		if n != nil {
			ds = n.daemons
		}
		var names []string
		for name := range ds {
			names = append(names, name)
		}
		c.mu.Unlock()
		for _, name := range names {
			if err := c.stopDaemon(n, name, 10*time.Second); err != nil {
				where := "cluster"
				if n != nil {
					where = "node " + n.Name
				}
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
	}
	return errors.Join(errs...)
}

// DaemonPID is the PID of the network daemon name on the node (flanneld), 0 if none runs.
func (n *Node) DaemonPID(name string) int {
	n.cluster.mu.Lock()
	defer n.cluster.mu.Unlock()
	p := n.daemons[name]
	if p == nil || !p.alive() {
		return 0
	}
	return p.PID
}

// RestartNetworkDaemon stops the node's network daemon (flanneld) gracefully and starts it
// again, and returns once it is ready again. It is an error for a network that runs no
// daemon on its nodes (kindnet).
func (n *Node) RestartNetworkDaemon(ctx context.Context) error {
	nw, ok := networks[n.cluster.Config.Network].(daemonNetwork)
	if !ok {
		return fmt.Errorf("node %s: network %s runs no daemon on its nodes", n.Name, n.cluster.Config.Network)
	}
	if err := nw.restartDaemon(ctx, n); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// cniBinDirs is the --cni-bin-dir value of every server: Config.CNIBinDir, and the dirs the
// network adds.
func (c *Cluster) cniBinDirs() string {
	dirs := c.Config.CNIBinDir
	if nw, ok := networks[c.Config.Network].(binDirNetwork); ok {
		for _, d := range nw.binDirs(c) {
			dirs += "," + d
		}
	}
	return dirs
}
