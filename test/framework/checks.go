//go:build linux

package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// CheckNoLeaks fails the test for everything after holds that before did not, and returns how
// many such things there are.
func CheckNoLeaks(t testing.TB, what string, before, after leakcheck.State) int {
	t.Helper()
	leaks := leakcheck.Leaks(before, after)
	for _, l := range leaks {
		t.Errorf("%s: left behind: %s", what, l)
	}
	return len(leaks)
}

// Proc is one process of the process table.
type Proc struct {
	PID, PPID int
	State     string
	Exe       string
	Argv0     string
}

// String describes the process for a failure message.
func (p Proc) String() string {
	return fmt.Sprintf("pid %d (ppid %d, state %s, exe %q, argv0 %q)", p.PID, p.PPID, p.State, p.Exe, p.Argv0)
}

// Processes reads the process table from /proc.
func Processes() ([]Proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		p := Proc{PID: pid, State: f[0]}
		p.PPID, _ = strconv.Atoi(f[1])
		p.Exe, _ = os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			p.Argv0, _, _ = strings.Cut(string(cmdline), "\x00")
		}
		out = append(out, p)
	}
	return out, nil
}

// StrayProcesses returns the processes that a test's plugins left: any process running a
// binary from under one of dirs, and any child of the test process or of one of servers (the
// server processes themselves excepted). An empty answer means none.
func StrayProcesses(dirs []string, servers ...int) string {
	procs, err := Processes()
	if err != nil {
		return err.Error()
	}
	self := os.Getpid()
	var stray []string
	for _, p := range procs {
		if p.PID == self || slices.Contains(servers, p.PID) {
			continue
		}
		under := false
		for _, d := range dirs {
			if strings.HasPrefix(p.Exe, d+"/") || strings.HasPrefix(p.Argv0, d+"/") {
				under = true
			}
		}
		if under || p.PPID == self || slices.Contains(servers, p.PPID) {
			stray = append(stray, p.String())
		}
	}
	return strings.Join(stray, "; ")
}

// CheckNoStrays fails the test if any plugin process is around (see StrayProcesses): a
// caller's call returns only after the plugins it ran have exited and been reaped, so there is
// nothing to wait for. It returns 1 if it found some, for tallies.
func CheckNoStrays(t testing.TB, dirs []string, servers ...int) int {
	t.Helper()
	if s := StrayProcesses(dirs, servers...); s != "" {
		t.Errorf("plugin processes left: %s", s)
		return 1
	}
	return 0
}

// PluginProcs lists the processes ("pid exe") running a binary from binDir, including one
// whose binary was replaced since it started ("... (deleted)").
func PluginProcs(binDir string) ([]string, error) {
	procs, err := Processes()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range procs {
		if strings.HasPrefix(p.Exe, binDir+"/") {
			out = append(out, strconv.Itoa(p.PID)+" "+p.Exe)
		}
	}
	return out, nil
}

// WaitPluginProcs waits until no process runs a binary from binDir, and returns how many did
// at the first look. It gives up when ctx ends.
func WaitPluginProcs(ctx context.Context, binDir string) (int, error) {
	first := -1
	for {
		procs, err := PluginProcs(binDir)
		if err != nil {
			return 0, err
		}
		if first < 0 {
			first = len(procs)
		}
		if len(procs) == 0 {
			return first, nil
		}
		if err := Pause(ctx, 20*time.Millisecond); err != nil {
			return first, fmt.Errorf("plugin processes still running: %v: %w", procs, err)
		}
	}
}

// StartPlugin starts a cninetwork.Plugin with opts, runs it and closes it at cleanup.
func StartPlugin(t testing.TB, opts ...cninetwork.Option) *cninetwork.Plugin {
	t.Helper()
	p, err := cninetwork.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// WaitDefault waits until the plugin's default network is name.
func WaitDefault(t testing.TB, p *cninetwork.Plugin, name string) {
	t.Helper()
	Eventually(t, fmt.Sprintf("default network %q", name), func() string {
		if s := p.Snapshot(); s.Default == nil || s.Default.Name != name {
			return fmt.Sprintf("default is %v (%v)", s.Default, s.Err)
		}
		return ""
	})
}

// NewPod returns a pod with a fresh sandbox ID and a fresh network namespace under nsDir, in
// the given Kubernetes namespace; the caller removes the namespace (Pod.NetNS).
func NewPod(t testing.TB, nsDir, name, namespace string) *cninetwork.Pod {
	t.Helper()
	id := NewID()
	path, err := netns.Create(nsDir, id[:16])
	if err != nil {
		t.Fatal(err)
	}
	return &cninetwork.Pod{SandboxID: id, Name: name, Namespace: namespace, UID: "uid-" + id[:8], NetNS: path}
}

// RemoveEmptyReservations removes, logs and counts the host-local reservations in st (taken
// over the store dir ipamDir) that name no owner. host-local creates a reservation file and
// then writes the container ID and interface into it, so a process-group kill landing between
// the two leaves a file no DEL or GC can match to a sandbox: host-local's own crash window,
// outside what any runtime can release through CNI. A reservation that names an owner is left
// for the leak check.
func RemoveEmptyReservations(t testing.TB, ipamDir string, st leakcheck.State) int {
	t.Helper()
	removed := 0
	for _, ip := range st.IPs {
		if st.IPOwners[ip] != "" {
			continue
		}
		t.Logf("host-local reservation %s is empty: host-local was killed between creating and writing it; removing it", ip)
		if err := os.Remove(filepath.Join(ipamDir, ip)); err != nil {
			t.Error(err)
			continue
		}
		removed++
	}
	return removed
}
