//go:build linux

package framework

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// kubeletHostPaths are the host paths containerd and a kubelet write to by default.
var kubeletHostPaths = []string{
	"/run/containerd", "/var/run/nri", "/etc/containerd", "/var/lib/containerd",
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/usr/libexec/kubernetes",
	"/sys/fs/cgroup/memory/k8s.io", "/sys/fs/cgroup/memory/kubepods",
}

// kubeletChains are the iptables chains a kubelet makes (makeIPTablesUtilChains).
var kubeletChains = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

// HostGuard checks that a suite left the host as it found it: paths a runtime, a kubelet or
// kube-proxy writes by default that did not exist before still do not, the sysctls they would
// set keep their values, and the host gained none of their iptables chains. Before reads the
// host before the suite (Needs.Before), After compares (Needs.AfterPass).
type HostGuard struct {
	// Suite names the suite in messages.
	Suite string
	// Kubelet checks what containerd and a kubelet would change: the paths they write to by
	// default, the host sysctls a kubelet sets (kubeletSysctls) and the chains it makes.
	Kubelet bool
	// Paths, Sysctls (as under /proc/sys) and Chains are what is checked besides.
	Paths, Sysctls, Chains []string

	absent  []string
	sysctls map[string]string
	rules   string
}

// Before reads what the host has. Paths that exist already cannot tell; they are named on
// stderr.
func (g *HostGuard) Before() error {
	paths := g.Paths
	if g.Kubelet {
		paths = append(slices.Clone(kubeletHostPaths), paths...)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			g.absent = append(g.absent, p)
		} else {
			fmt.Fprintf(os.Stderr, "%s: %s exists before the suite; whether the suite writes it is not checked\n", g.Suite, p)
		}
	}
	var err error
	if g.sysctls, err = g.readSysctls(); err != nil {
		return err
	}
	g.rules, err = iptablesSave()
	return err
}

// After reports every difference from what Before read.
func (g *HostGuard) After() error {
	var errs []error
	for _, p := range g.absent {
		if _, err := os.Lstat(p); err == nil {
			errs = append(errs, fmt.Errorf("%s did not exist before the suite and does now: something wrote outside its own dirs", p))
		}
	}
	now, err := g.readSysctls()
	if err != nil {
		return err
	}
	for name, v := range now {
		if v != g.sysctls[name] {
			errs = append(errs, fmt.Errorf("host sysctl %s was %q before the suite and is %q now", name, g.sysctls[name], v))
		}
	}
	after, err := iptablesSave()
	if err != nil {
		return err
	}
	chains := g.Chains
	if g.Kubelet {
		chains = append(slices.Clone(kubeletChains), chains...)
	}
	for _, c := range chains {
		if !strings.Contains(g.rules, c) && strings.Contains(after, c) {
			errs = append(errs, fmt.Errorf("the host has the iptables chain %s, which it did not have before the suite", c))
		}
	}
	return errors.Join(errs...)
}

func (g *HostGuard) readSysctls() (map[string]string, error) {
	names := g.Sysctls
	if g.Kubelet {
		names = append(slices.Sorted(maps.Keys(kubeletSysctls)), names...)
	}
	out := map[string]string{}
	for _, s := range names {
		b, err := os.ReadFile("/proc/sys/" + s)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// A module's (nf_conntrack's), not loaded: its appearing is a change too.
			out[s] = "(absent)"
		case err != nil:
			return nil, err
		default:
			out[s] = strings.TrimSpace(string(b))
		}
	}
	return out, nil
}

func iptablesSave() (string, error) {
	b, err := exec.Command("iptables-save").Output()
	if err != nil {
		return "", fmt.Errorf("iptables-save: %w", err)
	}
	return string(b), nil
}
