//go:build linux

package framework

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// HostGuard checks that a suite left the host as it found it: paths a runtime, a kubelet or
// kube-proxy writes by default that did not exist before still do not, the sysctls they would
// set keep their values, and the host gained none of their iptables chains. Before reads the
// host before the suite (Needs.Before), After compares (Needs.AfterPass).
type HostGuard struct {
	// Suite names the suite in messages.
	Suite string
	// Paths, Sysctls (as under /proc/sys) and Chains are what is checked.
	Paths, Sysctls, Chains []string

	absent  []string
	sysctls map[string]string
	rules   string
}

// Before reads what the host has. Paths that exist already cannot tell; they are named on
// stderr.
func (g *HostGuard) Before() error {
	for _, p := range g.Paths {
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
	for _, c := range g.Chains {
		if !strings.Contains(g.rules, c) && strings.Contains(after, c) {
			errs = append(errs, fmt.Errorf("the host has the iptables chain %s, which it did not have before the suite", c))
		}
	}
	return errors.Join(errs...)
}

func (g *HostGuard) readSysctls() (map[string]string, error) {
	out := map[string]string{}
	for _, s := range g.Sysctls {
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
