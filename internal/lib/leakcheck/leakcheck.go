//go:build linux

// Package leakcheck finds what pod networking can leave behind on a node: IPs reserved in
// host-local stores, libcni cache entries, network namespace mounts, host veths, and portmap
// iptables or nftables rules. Tests and benchmarks take a State before and after, and fail on
// any difference.
package leakcheck

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/netns"
)

// Scope says where to look.
type Scope struct {
	// HostLocalDirs are host-local IPAM dataDirs; every network store under each is read.
	HostLocalDirs []string
	// CacheDir is libcni's cache directory.
	CacheDir string
	// NetnsDir holds namespace mounts.
	NetnsDir string
	// Bridges names the bridges whose veth ports are counted. Veths elsewhere on the host
	// belong to others (tests run in parallel), so with no bridges no veth is read.
	Bridges []string
	// RuleNeedles are strings (container IDs, chain names) whose presence in `iptables-save`
	// or `nft list ruleset` output counts as a rule left behind. Empty: rules are not read.
	RuleNeedles []string
}

// State is what Take found, each list sorted.
type State struct {
	IPs []string // "<store>/<ip>"
	// IPOwners holds what each reservation of IPs names as its owner: host-local writes the
	// container ID and interface into the file, so "" means a plugin died between creating
	// the file and writing it.
	IPOwners map[string]string
	Cache    []string // cache file names
	Netns    []string // mounted namespace paths
	Veths    []string // host veths attached to one of Scope.Bridges
	Rules    []string // rule lines holding a needle
	Problems []string // what could not be read
}

// Take reads the current state.
func Take(s Scope) State {
	var st State
	for _, d := range s.HostLocalDirs {
		stores, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			st.Problems = append(st.Problems, err.Error())
		}
		for _, store := range stores {
			if !store.IsDir() {
				continue
			}
			files, _ := os.ReadDir(filepath.Join(d, store.Name()))
			for _, f := range files {
				if net.ParseIP(f.Name()) != nil {
					ip := store.Name() + "/" + f.Name()
					st.IPs = append(st.IPs, ip)
					owner, err := os.ReadFile(filepath.Join(d, ip))
					if err != nil {
						owner = []byte("unreadable: " + err.Error())
					}
					if st.IPOwners == nil {
						st.IPOwners = map[string]string{}
					}
					st.IPOwners[ip] = strings.Join(strings.Fields(string(owner)), " ")
				}
			}
		}
	}
	if s.CacheDir != "" {
		files, err := os.ReadDir(filepath.Join(s.CacheDir, "results"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			st.Problems = append(st.Problems, err.Error())
		}
		for _, f := range files {
			st.Cache = append(st.Cache, f.Name())
		}
	}
	if s.NetnsDir != "" {
		m, err := netns.Mounted(s.NetnsDir)
		if err != nil {
			st.Problems = append(st.Problems, err.Error())
		}
		st.Netns = m
	}
	if len(s.Bridges) > 0 {
		st.Veths, st.Problems = bridgeVeths(s.Bridges, st.Problems)
	}
	if len(s.RuleNeedles) > 0 {
		for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
			if _, err := exec.LookPath(cmd[0]); err != nil {
				continue
			}
			out, err := exec.Command(cmd[0], cmd[1:]...).Output()
			if err != nil {
				st.Problems = append(st.Problems, fmt.Sprintf("%s: %v", strings.Join(cmd, " "), err))
				continue
			}
			for _, line := range bytes.Split(out, []byte("\n")) {
				for _, n := range s.RuleNeedles {
					if n != "" && bytes.Contains(line, []byte(n)) {
						st.Rules = append(st.Rules, cmd[0]+": "+strings.TrimSpace(string(line)))
						break
					}
				}
			}
		}
	}
	for _, l := range [][]string{st.IPs, st.Cache, st.Netns, st.Veths, st.Rules} {
		slices.Sort(l)
	}
	return st
}

// Leaks returns what after holds that before did not, one line per item; empty means nothing
// was left behind. Problems in reading either state are reported too.
func Leaks(before, after State) []string {
	var out []string
	add := func(kind string, b, a []string, detail func(string) string) {
		for _, x := range a {
			if !slices.Contains(b, x) {
				out = append(out, kind+": "+x+detail(x))
			}
		}
	}
	none := func(string) string { return "" }
	add("host-local IP", before.IPs, after.IPs, func(ip string) string {
		if owner := after.IPOwners[ip]; owner != "" {
			return fmt.Sprintf(" (reserved for %q)", owner)
		}
		return " (empty reservation: its plugin died before writing the owner)"
	})
	add("libcni cache entry", before.Cache, after.Cache, none)
	add("netns mount", before.Netns, after.Netns, none)
	add("host veth", before.Veths, after.Veths, none)
	add("rule", before.Rules, after.Rules, none)
	for _, p := range after.Problems {
		out = append(out, "could not check: "+p)
	}
	return out
}

// bridgeVeths lists the veths whose master is one of the named bridges. A bridge that does not
// exist has no ports.
func bridgeVeths(bridges []string, problems []string) ([]string, []string) {
	masters := map[int]bool{}
	for _, b := range bridges {
		if l, err := netlink.LinkByName(b); err == nil {
			masters[l.Attrs().Index] = true
		}
	}
	links, err := LinkList()
	if err != nil {
		return nil, append(problems, fmt.Sprintf("list links: %v", err))
	}
	var out []string
	for _, l := range links {
		if l.Type() == "veth" && masters[l.Attrs().MasterIndex] {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, problems
}

// BridgePorts lists the names of the links enslaved to the bridge; none if the bridge does not
// exist.
func BridgePorts(bridge string) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil, nil
		}
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// LinkList lists the host's links. The kernel interrupts a link dump when links change during
// it (other pods coming and going), and netlink then returns partial results with
// ErrDumpInterrupted: retry, a bounded number of times, until one dump completes.
func LinkList() ([]netlink.Link, error) {
	var err error
	for range 100 {
		var links []netlink.Link
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}
