//go:build linux

// Command local-cluster brings up and tears down a local cluster of cnishim nodes (see package
// localcluster); hack/local-cluster.sh builds what it needs and runs it.
//
// Usage:
//
//	local-cluster up --work-dir DIR --cnishim BIN --cni-bin-dir DIR [--nodes 3] [--network kindnet|flannel] [--flannel-bin-dir DIR] [--ip-family ipv4|dual] [--prefix lc]
//	local-cluster down --work-dir DIR [--keep-logs]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: local-cluster up|down [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "down":
		err = down(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want up or down", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "local-cluster: %v\n", err)
		os.Exit(1)
	}
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	var cfg localcluster.Config
	fs.IntVar(&cfg.Nodes, "nodes", 3, "number of nodes")
	network := fs.String("network", "kindnet", "pod network: kindnet or flannel")
	fs.StringVar(&cfg.FlannelBinDir, "flannel-bin-dir", "", "dir of flanneld, etcd, etcdctl and the flannel plugin (required for flannel; hack/install-flannel.sh)")
	family := fs.String("ip-family", "ipv4", "ipv4 or dual")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "absolute dir for the cluster's files (required; missing or empty)")
	fs.StringVar(&cfg.Cnishim, "cnishim", "", "cnishim binary (required)")
	fs.StringVar(&cfg.CNIBinDir, "cni-bin-dir", "", "CNI plugin dir (required)")
	fs.StringVar(&cfg.Prefix, "prefix", "lc", "prefix of the link names in the root namespace")
	verbosity := fs.Int("v", 2, "log verbosity of every cnishim serve")
	_ = fs.Parse(args)
	cfg.Network, cfg.IPFamily = *network, localcluster.IPFamily(*family)
	cfg.ServeArgs = []string{"-v", fmt.Sprint(*verbosity)}
	var err error
	if cfg.WorkDir, err = filepath.Abs(cfg.WorkDir); err != nil {
		return err
	}
	c, err := localcluster.Up(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("cluster up: %d nodes, network %s, %s; state in %s\n", len(c.Nodes), c.Config.Network, c.Config.IPFamily, c.StateFile())
	for _, n := range c.Nodes {
		fmt.Printf("  %s  ips %s  pod CIDRs %s\n      netns %s\n      crictl config %s\n      log %s\n",
			n.Name, join(n.IPs), join(n.PodCIDRs), n.NetNSPath, n.CrictlConfig, n.Log)
	}
	last := c.Nodes[len(c.Nodes)-1]
	fmt.Printf("\nExample:\n  CRI_CONFIG_FILE=%s crictl runp pod.json\n  nsenter --net=%s ip route\n", last.CrictlConfig, last.NetNSPath)
	fmt.Printf("Tear down: hack/local-cluster.sh down --work-dir %s\n", c.Config.WorkDir)
	return nil
}

func join[T fmt.Stringer](xs []T) string {
	var s []string
	for _, x := range xs {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	workDir := fs.String("work-dir", "", "the work dir of the cluster (required)")
	keepLogs := fs.Bool("keep-logs", false, "leave each node's serve.log")
	_ = fs.Parse(args)
	if *workDir == "" {
		return fmt.Errorf("--work-dir is required")
	}
	c, err := localcluster.Load(filepath.Join(*workDir, localcluster.StateFileName))
	if err != nil {
		return err
	}
	c.Config.KeepLogs = *keepLogs
	if err := c.Down(ctx); err != nil {
		return err
	}
	fmt.Printf("cluster in %s is down\n", c.Config.WorkDir)
	return nil
}
