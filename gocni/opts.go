package cni

import (
	"fmt"
	"strings"

	cnilibrary "github.com/containernetworking/cni/libcni"

	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// config is what go-cni's options set and GetConfig reports.
type config struct {
	pluginDirs       []string
	pluginConfDir    string
	pluginMaxConfNum int
	prefix           string
}

// Opt sets options for a CNI instance
type Opt func(c *libcni) error

// WithInterfacePrefix sets the prefix of the names GetConfig and Result give the pod's
// interfaces. The default network's interface is eth0 whatever the prefix (see the package
// doc).
func WithInterfacePrefix(prefix string) Opt {
	return func(c *libcni) error {
		c.prefix = prefix
		return nil
	}
}

// WithPluginDir can be used to set the locations of
// the cni plugin binaries
func WithPluginDir(dirs []string) Opt {
	return func(c *libcni) error {
		c.pluginDirs = dirs
		return nil
	}
}

// WithPluginConfDir can be used to configure the
// cni configuration directory.
func WithPluginConfDir(dir string) Opt {
	return func(c *libcni) error {
		c.pluginConfDir = dir
		return nil
	}
}

// WithPluginMaxConfNum can be used to configure the
// max cni plugin config file num.
func WithPluginMaxConfNum(maxConfigs int) Opt {
	return func(c *libcni) error {
		c.pluginMaxConfNum = maxConfigs
		return nil
	}
}

// WithMinNetworkCount can be used to configure the
// minimum networks to be configured and initialized
// for the status to report success. By default its 1.
func WithMinNetworkCount(count int) Opt {
	return func(c *libcni) error {
		c.networkCount = count
		return nil
	}
}

// WithLoNetwork brings the pod's loopback interface up with the loopback plugin, on the
// built-in network "cni-loopback", as go-cni does.
func WithLoNetwork(c *libcni) error {
	c.pending.lo = true
	return nil
}

// WithConf can be used to load config directly
// from byte.
func WithConf(bytes []byte) Opt {
	return WithConfIndex(bytes, 0)
}

// WithConfIndex loads a network configuration (.conf) from bytes. The index of go-cni's
// interface name is not kept: networks given as bytes or files get eth0, eth1, ... in the
// order given.
func WithConfIndex(bytes []byte, index int) Opt {
	return func(c *libcni) error {
		//lint:ignore SA1019 go-cni's WithConf takes the single-plugin .conf format
		conf, err := cnilibrary.ConfFromBytes(bytes)
		if err != nil {
			return err
		}
		return c.addConf(conf)
	}
}

// WithConfFile can be used to load network config
// from an .conf file. Supported with absolute fileName
// with path only.
func WithConfFile(fileName string) Opt {
	return func(c *libcni) error {
		//lint:ignore SA1019 go-cni's WithConfFile takes the single-plugin .conf format
		conf, err := cnilibrary.ConfFromFile(fileName)
		if err != nil {
			return err
		}
		return c.addConf(conf)
	}
}

// WithConfListBytes can be used to load network config list directly
// from byte
func WithConfListBytes(bytes []byte) Opt {
	return func(c *libcni) error {
		confList, err := cnilibrary.ConfListFromBytes(bytes)
		if err != nil {
			return err
		}
		c.pending.explicit = append(c.pending.explicit, confList)
		return nil
	}
}

// WithConfListFile can be used to load network config
// from an .conflist file. Supported with absolute fileName
// with path only.
func WithConfListFile(fileName string) Opt {
	return func(c *libcni) error {
		confList, err := cnilibrary.ConfListFromFile(fileName)
		if err != nil {
			return err
		}
		c.pending.explicit = append(c.pending.explicit, confList)
		return nil
	}
}

func (c *libcni) addConf(conf *cnilibrary.NetworkConfig) error {
	//lint:ignore SA1019 a .conf becomes a list of one, as go-cni makes it
	confList, err := cnilibrary.ConfListFromConf(conf)
	if err != nil {
		return err
	}
	c.pending.explicit = append(c.pending.explicit, confList)
	return nil
}

// WithDefaultConf gives pods the configuration directory's networks: the default one, the
// first valid file in lexical order, and the next ones up to WithPluginMaxConfNum. The
// directory is watched from then on (see Load).
func WithDefaultConf(c *libcni) error {
	return loadFromConfDir(c, c.pluginMaxConfNum)
}

// WithAllConf gives pods every valid network of the configuration directory.
func WithAllConf(c *libcni) error {
	return loadFromConfDir(c, 0)
}

func loadFromConfDir(c *libcni, maxConfigs int) error {
	if strings.TrimSpace(c.pluginConfDir) == "" {
		return fmt.Errorf("no configuration directory: %w", ErrRead)
	}
	c.pending.dir = true
	c.pending.dirMax = maxConfigs
	return nil
}

// Options of cnishim's, beyond go-cni's.

// WithCacheDir sets libcni's cache directory (default /var/lib/cni), which go-cni cannot.
func WithCacheDir(dir string) Opt {
	return func(c *libcni) error {
		c.cacheDir = dir
		return nil
	}
}

// WithStateDir sets the directory where the Plugin records what it attached, so that a pod is
// torn down with its own configuration (default: a directory per configuration directory under
// the cache directory). Two CNIs must not share one.
func WithStateDir(dir string) Opt {
	return func(c *libcni) error {
		c.stateDir = dir
		return nil
	}
}

// WithPluginOptions passes more options to the cninetwork.Plugin behind the CNI: admission
// bounds (cninetwork.WithAdmission), the operation timeout, metrics. The directories and
// loopback are set by this package's options and override any given here.
func WithPluginOptions(opts ...cninetwork.Option) Opt {
	return func(c *libcni) error {
		c.pluginOpts = append(c.pluginOpts, opts...)
		return nil
	}
}
