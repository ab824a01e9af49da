//go:build linux

package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/containernetworking/cni/libcni"
)

// Defaults of the flags shared by several commands.
const (
	defaultListen   = "unix:///run/cnishim/cnishim.sock"
	defaultStateDir = "/var/lib/cnishim"
)

// cniFlags are the kubelet's CNI flags, with the kubelet's names and defaults.
type cniFlags struct {
	confDir     string
	binDirs     string
	cacheDir    string
	networkName string
}

func (c *cniFlags) register(fs *flag.FlagSet, withCache bool) {
	fs.StringVar(&c.confDir, "cni-conf-dir", confwatch.DefaultConfDir, "directory of CNI network configuration files")
	fs.StringVar(&c.binDirs, "cni-bin-dir", confwatch.DefaultBinDir, "comma-separated list of directories searched for CNI plugin binaries")
	if withCache {
		fs.StringVar(&c.cacheDir, "cni-cache-dir", libcni.CacheDir, "libcni's cache directory (results and configs of attached pods)")
	}
	fs.StringVar(&c.networkName, "network-name", "", "pin the default network to this name (default: first valid config file in lexical order)")
}

func (c *cniFlags) binDirList() []string { return splitList(c.binDirs) }

// watcherOptions returns the confwatch options the flags ask for.
func (c *cniFlags) watcherOptions() []confwatch.Option {
	opts := []confwatch.Option{confwatch.WithBinDirs(c.binDirList()...)}
	if c.networkName != "" {
		opts = append(opts, confwatch.WithNetworkName(c.networkName))
	}
	return opts
}

// pluginOptions returns the cninetwork options the flags ask for.
func (c *cniFlags) pluginOptions() []cninetwork.Option {
	opts := []cninetwork.Option{
		cninetwork.WithConfDir(c.confDir),
		cninetwork.WithBinDirs(c.binDirList()...),
		cninetwork.WithCacheDir(c.cacheDir),
	}
	if c.networkName != "" {
		opts = append(opts, cninetwork.WithNetworkName(c.networkName))
	}
	return opts
}

// loopbackFlag is the --loopback flag: in-process (the Plugin's default), plugin or off.
type loopbackFlag struct{ mode string }

func (l *loopbackFlag) String() string {
	if l.mode == "" {
		return "in-process"
	}
	return l.mode
}

func (l *loopbackFlag) Set(s string) error {
	switch s {
	case "in-process", "plugin", "off":
		l.mode = s
	default:
		return fmt.Errorf("want in-process, plugin or off")
	}
	return nil
}

// options returns the Plugin options of the mode.
func (l *loopbackFlag) options() []cninetwork.Option {
	switch l.mode {
	case "plugin":
		return []cninetwork.Option{cninetwork.WithLoopbackPlugin()}
	case "off":
		return []cninetwork.Option{cninetwork.WithoutLoopback()}
	}
	return nil
}

// durationAtLeast checks a duration flag.
func durationAtLeast(name string, d, min time.Duration) error {
	if d < min {
		return fmt.Errorf("%w: --%s %v: must be at least %v", errUsage, name, d, min)
	}
	return nil
}
