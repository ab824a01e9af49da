//go:build linux

package host

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Leaks is what a run left behind, by kind. The zero value is a clean run.
type Leaks struct {
	// Reservations are host-local's reserved-IP files in the data dir of the benchmark
	// network (and of the slow network), as network/IP.
	Reservations []string
	// Veths are links still enslaved to the benchmark bridge (or the slow network's), as
	// bridge:link.
	Veths []string
	// PodLinks are links other than lo still inside a pod's namespace.
	PodLinks []string
	// CacheFiles are libcni cache files naming a benchmark pod, in this environment's cache
	// (every implementation's) and in libcni's default (/var/lib/cni), which none should use.
	CacheFiles []string
	// Rules are iptables or nftables lines and chains naming a benchmark pod.
	Rules []string
}

// Clean reports whether nothing was left.
func (l *Leaks) Clean() bool {
	return len(l.Reservations)+len(l.Veths)+len(l.PodLinks)+len(l.CacheFiles)+len(l.Rules) == 0
}

// String is a one-line summary: the count of each kind, and the first few leaked items.
func (l *Leaks) String() string {
	s := fmt.Sprintf("host-local reservations %d, veths on the bridge %d, links in pod netns %d, libcni cache files %d, iptables/nft rules %d",
		len(l.Reservations), len(l.Veths), len(l.PodLinks), len(l.CacheFiles), len(l.Rules))
	var items []string
	for _, kind := range [][]string{l.Reservations, l.Veths, l.PodLinks, l.CacheFiles, l.Rules} {
		items = append(items, first(kind, 3)...)
	}
	if len(items) > 0 {
		s += "; e.g. " + strings.Join(first(items, 6), ", ")
	}
	return s
}

// CheckLeaks looks for anything of pods left on the machine. Call it after a run's
// teardown, before the pods' namespaces are removed (their removal would hide veths).
func (e *Env) CheckLeaks(pods []impls.PodSpec) (*Leaks, error) {
	var l Leaks
	var errs []error

	for _, n := range e.networks() {
		// host-local keeps one file per reserved IP (named by the IP) plus its lock and
		// last-reserved bookkeeping.
		entries, err := os.ReadDir(filepath.Join(e.IPAMDir, n.Network))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, de := range entries {
			if net.ParseIP(de.Name()) != nil {
				l.Reservations = append(l.Reservations, n.Network+"/"+de.Name())
			}
		}

		if br, err := netlink.LinkByName(n.Bridge); err == nil {
			links, err := netlink.LinkList()
			if err != nil {
				errs = append(errs, fmt.Errorf("list links: %w", err))
			}
			for _, link := range links {
				if link.Attrs().MasterIndex == br.Attrs().Index {
					l.Veths = append(l.Veths, n.Bridge+":"+link.Attrs().Name)
				}
			}
		}
	}

	for i := range pods {
		links, err := podLinks(pods[i].NetNS)
		if err != nil {
			errs = append(errs, err)
		}
		for _, name := range links {
			l.PodLinks = append(l.PodLinks, pods[i].Name+":"+name)
		}
	}

	// Every implementation keeps its cache in the environment's; the host's, libcni's default
	// (which a run may point libcni.CacheDir away from), none should touch, and is checked too.
	for _, dir := range []string{e.CacheDir, hostCacheDir} {
		entries, err := os.ReadDir(filepath.Join(dir, "results"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		ids := idSet(pods)
		for _, de := range entries {
			for _, part := range strings.Split(de.Name(), "-") {
				if ids[part] {
					l.CacheFiles = append(l.CacheFiles, filepath.Join(dir, "results", de.Name()))
					break
				}
			}
		}
	}

	rules, err := ruleDump()
	if err != nil {
		errs = append(errs, err)
	}
	for _, line := range strings.Split(rules, "\n") {
		if e.mentionsAny(line, pods) {
			l.Rules = append(l.Rules, strings.TrimSpace(line))
		}
	}
	return &l, errors.Join(errs...)
}

func idSet(pods []impls.PodSpec) map[string]bool {
	m := make(map[string]bool, len(pods))
	for i := range pods {
		m[pods[i].ID] = true
	}
	return m
}

// podLinks lists the links other than lo inside the namespace at path; a namespace that is
// already gone has none.
func podLinks(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	ns, err := netns.GetFromPath(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netns %s: list links: %w", path, err)
	}
	var out []string
	for _, link := range links {
		if link.Attrs().Name != "lo" {
			out = append(out, link.Attrs().Name)
		}
	}
	return out, nil
}

// ruleDump returns every iptables table (as iptables-save prints it) and the nftables
// ruleset, where the plugins' rules and chains for a pod would be.
func ruleDump() (string, error) {
	var buf bytes.Buffer
	var errs []error
	for _, cmd := range [][]string{{"iptables-save"}, {"nft", "list", "ruleset"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		out, err := exec.Command(cmd[0], cmd[1:]...).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", strings.Join(cmd, " "), err))
		}
		buf.Write(out)
		buf.WriteByte('\n')
	}
	return buf.String(), errors.Join(errs...)
}

// mentions reports whether a rule line names the pod: its container ID (the plugins put it
// in rule comments), or the per-pod chains portmap (CNI-DN-<hash>) and bridge's ipMasq
// (CNI-<hash>) create, named from a SHA-512 of network name and container ID.
func mentions(line, network string, p *impls.PodSpec) bool {
	return strings.Contains(line, p.ID) ||
		strings.Contains(line, chainName("CNI-DN-", network, p.ID)) ||
		strings.Contains(line, chainName("CNI-", network, p.ID))
}

// ChainName is how the plugins name a per-container chain: the prefix followed by the hex
// SHA-512 of network name and container ID, 28 characters in all.
func ChainName(prefix, network, id string) string { return chainName(prefix, network, id) }

func chainName(prefix, network, id string) string {
	sum := sha512.Sum512([]byte(network + id))
	return (prefix + fmt.Sprintf("%x", sum))[:28]
}

// hostCacheDir is the host's libcni cache directory.
const hostCacheDir = "/var/lib/cni"
