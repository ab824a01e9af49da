//go:build linux

package host

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/containernetworking/cni/libcni"
)

// Slow are the names of the benchmark's slow-IPAM network.
var Slow = Names{Network: "cnibench-slow", Bridge: "cnibslow0", Subnet: "10.193.0.0/16"}

// SlowIPAM is the plugin name the slow IPAM (the cnitest test plugin) is installed under.
const SlowIPAM = "cnibench-slow-ipam"

// Setup says which networks a run's pods are on.
type Setup struct {
	// IPAMWait, when above zero, is how long the slow network's IPAM waits on ADD before
	// host-local allocates; zero is the benchmark network alone.
	IPAMWait time.Duration
	// Mixed makes the benchmark network the default network and the slow network a second
	// one, for the pods that name it (impls.PodSpec.ExtraNetwork). Without it, a slow setup
	// has the slow network as its only, default, network.
	Mixed bool
}

// AddSlowNetwork readies the environment for slow-IPAM setups: cnitest, the test plugin
// binary, is installed as SlowIPAM in a plugin directory of its own, and the network named by
// names is checked and cleaned like the benchmark network from then on. A bridge left by an
// interrupted earlier run is removed first.
func (e *Env) AddSlowNetwork(cnitest string, names Names) error {
	if e.slow != nil {
		return fmt.Errorf("slow network %s: already added", e.slow.Network)
	}
	abs, err := filepath.Abs(cnitest)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("slow IPAM: cnitest binary: %w", err)
	}
	if err := deleteBridge(names.Bridge); err != nil {
		return err
	}
	dir := filepath.Join(e.Root, "slow-bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Symlink(abs, filepath.Join(dir, SlowIPAM)); err != nil {
		return fmt.Errorf("slow IPAM: %w", err)
	}
	e.slow, e.slowBinDir = &names, dir
	return nil
}

// Config returns the implementation configuration for a setup, writing its conf dir (and
// the slow IPAM's behavior file) on first use. A slow setup needs AddSlowNetwork first.
func (e *Env) Config(s Setup, limits *impls.Limits) (impls.Config, error) {
	if s.IPAMWait <= 0 {
		return e.Impl(limits), nil
	}
	if e.slow == nil {
		return impls.Config{}, fmt.Errorf("setup with a slow IPAM (%s): no slow network added", s.IPAMWait)
	}
	kind := "slow"
	if s.Mixed {
		kind = "mixed"
	}
	dir := filepath.Join(e.Root, fmt.Sprintf("net.d-%s-%dms", kind, s.IPAMWait.Milliseconds()))
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := e.writeSlowConfDir(dir, s); err != nil {
			return impls.Config{}, err
		}
	}
	return impls.Config{ConfDir: dir, BinDir: e.BinDir, IPAMBinDir: e.slowBinDir, CacheDir: e.CacheDir, Limits: limits}, nil
}

func (e *Env) writeSlowConfDir(dir string, s Setup) error {
	tmp := dir + ".tmp"
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	bpath, err := e.writeBehavior(s.IPAMWait)
	if err != nil {
		return err
	}
	// The slow network sorts after the benchmark network: in a mixed setup the latter stays
	// the default network.
	if s.Mixed {
		if err := os.WriteFile(filepath.Join(tmp, "10-cnibench.conflist"), e.ConfList("1.0.0"), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "20-"+e.slow.Network+".conflist"), e.slowConfList(bpath), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// slowConfList is the slow network: bridge + the slow IPAM (which hands the allocation on
// to host-local after its wait) + portmap. The behavior key reaches the IPAM through the
// config bridge passes it.
func (e *Env) slowConfList(behaviorFile string) []byte {
	return bridgeConfList("1.0.0", *e.slow, SlowIPAM, behaviorFile, e.IPAMDir)
}

// writeBehavior writes the slow IPAM's behavior file for an ADD wait and returns its path.
// The slow IPAM sleeps on ADD only: it stands for an IPAM that asks a server for an
// address. DEL releases the address at once, so teardowns measure what they did before.
func (e *Env) writeBehavior(wait time.Duration) (string, error) {
	b := behavior.File{Commands: map[string]behavior.Action{
		"ADD": {SleepMS: int(wait.Milliseconds()), DelegateIPAM: true, IPAMDelegate: "host-local"},
		"DEL": {DelegateIPAM: true, IPAMDelegate: "host-local"},
	}}
	data, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.Root, fmt.Sprintf("slow-ipam-%dms.json", wait.Milliseconds()))
	return path, os.WriteFile(path, data, 0o600)
}

// networks are the networks the leak checks and the sweep cover.
func (e *Env) networks() []Names {
	if e.slow == nil {
		return []Names{e.Names}
	}
	return []Names{e.Names, *e.slow}
}

// slowList is the slow network's conflist for the sweep (DEL does not wait, whatever the
// setup's IPAM wait).
func (e *Env) slowList() (*libcni.NetworkConfigList, error) {
	bpath, err := e.writeBehavior(0)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(e.slowConfList(bpath))
	if err != nil {
		return nil, fmt.Errorf("slow network %s: %w", e.slow.Network, err)
	}
	return list, nil
}
