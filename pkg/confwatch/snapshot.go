package confwatch

import (
	"github.com/containernetworking/cni/libcni"
)

// Snapshot is one published view of the configuration directory. A Snapshot and everything it
// points to are immutable: callers must not modify them, and may keep and share them freely.
type Snapshot struct {
	// Generation increases by one each time the Watcher publishes a snapshot that differs from
	// the previous one. The first scan publishes generation 1; zero means not scanned yet.
	Generation uint64
	// Dir is the configuration directory the snapshot was read from.
	Dir string
	// Default is the network a pod sandbox gets unless it asks for another; nil when not ready.
	Default *Network
	// Networks holds every valid network, in lexical order of file name.
	Networks []*Network
	// Skipped holds every candidate file that was not valid, in lexical order, with its reason.
	Skipped []Skipped
	// Err is nil when Default is set; otherwise it says why not, in words an operator can act
	// on. It wraps ErrNotReady, and errPinnedNotFound when a pinned name has no valid config.
	Err error
}

// Network is one valid CNI network configuration.
type Network struct {
	// File is the absolute path of the configuration file.
	File string
	// Name is the network's name.
	Name string
	// CNIVersion is the configuration's cniVersion.
	CNIVersion string
	// PluginTypes lists the plugin chain's types, in order.
	PluginTypes []string
	// Capabilities lists the capabilities any plugin of the chain declares true, sorted.
	Capabilities []string
	// Digest identifies the configuration's content (the file and any plugin subdirectory
	// configs); two Networks with the same Digest were loaded from the same bytes.
	Digest string
	// Config is the parsed list, ready for libcni. Callers must not modify it.
	Config *libcni.NetworkConfigList
}

// Skipped is a candidate configuration file that is not valid.
type Skipped struct {
	// File is the absolute path of the file.
	File string
	// Reason says why the file was skipped.
	Reason error
}

// Network returns the valid network with the given name, or nil if there is none.
func (s *Snapshot) Network(name string) *Network {
	for _, n := range s.Networks {
		if n.Name == name {
			return n
		}
	}
	return nil
}
