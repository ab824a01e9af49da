//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/test/framework"
)

// A node is shared: another CRI runtime and a plain libcni caller use the same libcni cache
// dir as server A, each on networks of their own. A's restart (whose recovery runs a GC),
// cnishim gc against A and the removal of A's only pod take nothing from them: their IP
// reservations, veths and cache entries are byte for byte as before, the other runtime still
// reports its pod ready with the same IP, and both still answer on their IPs.
func TestSharedCacheDirOtherRuntimesKeepTheirAttachments(t *testing.T) {
	cache := t.TempDir()
	netA := newTestNet(t, "e2e-shared-a")
	netB := newTestNet(t, "e2e-shared-b")
	netC := newTestNet(t, "e2e-shared-plain")
	for _, n := range []*testNet{netA, netB, netC} {
		n.CNIVersion = "1.1.0" // so GC's CNI GC phase runs too
	}
	a := startServerWith(t, netA, serverDirs{cacheDir: cache})
	b := startServerWith(t, netB, serverDirs{cacheDir: cache})
	// A's pods go before B's leak check (which reads the cache dir A shares) when the test fails.
	t.Cleanup(a.RemoveLeftoverPods)
	for _, s := range []*server{a, b} {
		s.InstallConf()
		s.WaitNetworkReady(true)
	}
	plain := attachPlain(t, cache, netC)

	bPod := b.Runp(podSpec{Name: "other-runtime"})
	bStatus := b.Inspectp(bPod)
	bIP := b.PodIP(bPod)
	greet(t, bStatus.Info.NetNSPath, "other-runtime")
	greet(t, plain.netns, "plain")
	bAddr := net.JoinHostPort(bIP.String(), fmt.Sprint(containerPort))
	plainAddr := net.JoinHostPort(plain.ip.String(), fmt.Sprint(containerPort))
	fetch(t, "", bAddr, "hello from other-runtime")
	fetch(t, "", plainAddr, "hello from plain")

	others := []string{bPod, plain.rt.ContainerID}
	before := takeAttachments(t, cache, others, netB, netC)
	if len(before.ips) != 2 || len(before.cache) != 2 || len(before.ports[netB.Bridge]) != 1 || len(before.ports[netC.Bridge]) != 1 {
		t.Fatalf("the other runtime's pod and the plain attachment, before: %+v; want one IP, cache entry and veth each", before)
	}

	aPod := a.Runp(podSpec{Name: "a-pod"})
	a.PodIP(aPod)
	check := func(stage string) {
		t.Helper()
		if diff := before.diff(takeAttachments(t, cache, others, netB, netC)); len(diff) > 0 {
			t.Fatalf("%s, the attachments of others changed:\n  %s", stage, strings.Join(diff, "\n  "))
		}
		if st := b.Inspectp(bPod); st.Status.State != "SANDBOX_READY" || st.Status.Network == nil || st.Status.Network.IP != bIP.String() {
			t.Fatalf("%s, the other runtime reports its pod as %+v; want ready with IP %s", stage, st.Status, bIP)
		}
		fetch(t, "", bAddr, "hello from other-runtime")
		fetch(t, "", plainAddr, "hello from plain")
	}

	a.Stop()
	a.Start()
	check("after A's restart")
	a.gc()
	check("after cnishim gc against A")
	a.MustCrictl("rmp", "-f", aPod)
	a.gc()
	check("after A's pod was removed and cnishim gc ran again")

	plain.del(t)
	b.MustCrictl("rmp", "-f", bPod)
	if st := takeAttachments(t, cache, others, netB, netC); len(st.ips)+len(st.cache)+len(st.ports[netB.Bridge])+len(st.ports[netC.Bridge]) > 0 {
		t.Fatalf("left after the plain DEL and crictl rmp: %+v", st)
	}
}

// A pod of a network with "disableGC": true whose sandbox the server forgot without tearing it
// down (killed, its record lost) keeps its attachment through the restart's GC and cnishim gc:
// the runtime must not garbage-collect such a network. With GC enabled, the same attachment is
// collected.
func TestSharedDisableGCNetworkKeepsUnknownAttachment(t *testing.T) {
	for _, tc := range []struct {
		name      string
		disableGC bool
	}{
		{name: "disableGC", disableGC: true},
		{name: "gc-enabled", disableGC: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t, "e2e-nogc-"+tc.name)
			n.CNIVersion, n.DisableGC = "1.1.0", tc.disableGC
			s := startServer(t, n)
			s.InstallConf()
			s.WaitNetworkReady(true)
			id := s.Runp(podSpec{Name: "forgotten"})
			ps := s.Inspectp(id)
			s.PodIP(id)

			cni := libcni.NewCNIConfigWithCacheDir([]string{env.CNIBin}, s.CacheDir, nil)
			atts, err := cni.GetCachedAttachments(id)
			if err != nil || len(atts) != 1 {
				t.Fatalf("libcni cache of %s: %v, %v; want one attachment", id, atts, err)
			}
			// The netns is held open here, so the pod's veth outlives the server's removal of
			// a mount it no longer owns, and the attachment can be torn down by hand.
			held := holdNetNS(t, ps.Info.NetNSPath)
			t.Cleanup(func() {
				delAttachment(t, cni, atts[0], held)
				if err := netns.Remove(ps.Info.NetNSPath); err != nil {
					t.Errorf("remove netns %s: %v", ps.Info.NetNSPath, err)
				}
			})
			before := takeAttachments(t, s.CacheDir, []string{id}, n)
			if len(before.ips) != 1 || len(before.cache) != 1 || len(before.ports[n.Bridge]) != 1 {
				t.Fatalf("the pod's attachment: %+v; want one IP, cache entry and veth", before)
			}

			s.Kill()
			if err := os.Remove(filepath.Join(s.StateDir, "sandboxes", id+".json")); err != nil {
				t.Fatal(err)
			}
			check := func(stage string) {
				t.Helper()
				after := takeAttachments(t, s.CacheDir, []string{id}, n)
				diff := before.diff(after)
				if tc.disableGC && len(diff) > 0 {
					t.Fatalf("%s, the attachment on a disableGC network was garbage-collected:\n  %s", stage, strings.Join(diff, "\n  "))
				}
				if !tc.disableGC && len(after.ips)+len(after.cache) > 0 {
					t.Fatalf("%s, the attachment of the forgotten sandbox is still there: %+v", stage, after)
				}
			}
			s.Start()
			check("after the restart")
			s.gc()
			check("after cnishim gc")
			if !tc.disableGC {
				return
			}

			// Tear the kept attachment down by hand, from what libcni cached.
			cached, err := cni.GetCachedAttachments(id)
			if err != nil || len(cached) != 1 {
				t.Fatalf("libcni cache of %s: %v, %v; want one attachment", id, cached, err)
			}
			delAttachment(t, cni, cached[0], held)
			if after := takeAttachments(t, s.CacheDir, []string{id}, n); len(after.ips)+len(after.cache)+len(after.ports[n.Bridge]) > 0 {
				t.Fatalf("left after the DEL by hand: %+v", after)
			}
		})
	}
}

// One server per state dir: a second cnishim serve on the state dir of a running one exits
// non-zero, naming the running server's PID and socket, and creates nothing (not its socket
// dir, not its cache dir, nothing in the state dir); the running server's pod is untouched.
// Once the first server is killed, the kernel has released its hold and a new one starts.
func TestSharedStateDirOneServer(t *testing.T) {
	s := readyServer(t, "e2e-onestate")
	id := s.Runp(podSpec{Name: "held"})
	ip := s.PodIP(id)
	listing := treeOf(t, s.StateDir)

	other := t.TempDir()
	sockDir := filepath.Join(other, "run")
	cacheDir := filepath.Join(other, "cache")
	sock := filepath.Join(sockDir, "cri.sock")
	cmd := exec.CommandContext(t.Context(), env.Cnishim, "serve",
		"--listen", "unix://"+sock,
		"--state-dir", s.StateDir,
		"--cni-conf-dir", s.ConfDir,
		"--cni-bin-dir", env.CNIBin,
		"--cni-cache-dir", cacheDir,
		"--operation-timeout", "1m")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// It must exit on its own: listening, or still running after the hang guard, fails.
	hangGuard := time.After(time.Minute)
	for exited := false; !exited; {
		var err error
		select {
		case err = <-done:
			exited = true
			if err == nil {
				t.Errorf("a second cnishim serve on state dir %s exited 0", s.StateDir)
			}
		case <-hangGuard:
			err = fmt.Errorf("still running after a minute")
		case <-time.After(50 * time.Millisecond):
			if _, serr := os.Stat(sock); serr == nil {
				err = fmt.Errorf("listening on %s", sock)
			}
		}
		if !exited && err != nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			exited = true
			t.Errorf("a second cnishim serve on state dir %s started: %v", s.StateDir, err)
		}
	}
	out := stderr.String()
	pid := s.PID()
	if !regexp.MustCompile(`\b`+fmt.Sprint(pid)+`\b`).MatchString(out) || !strings.Contains(out, s.Sock) {
		t.Errorf("the second server's output does not name the running one (PID %d, socket %s):\n%s", pid, s.Sock, out)
	}
	for _, p := range []string{sockDir, cacheDir} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the second server created %s (%v)", p, err)
		}
	}
	if now := treeOf(t, s.StateDir); !slices.Equal(now, listing) {
		t.Errorf("the state dir changed under the running server:\nbefore %v\nafter  %v", listing, now)
	}
	if st := s.Inspectp(id); st.Status.State != "SANDBOX_READY" || st.Status.Network == nil || st.Status.Network.IP != ip.String() {
		t.Errorf("the running server's pod after the second server: %+v; want ready with IP %s", st.Status, ip)
	}

	s.Kill()
	s.Start() // fails the test if it does not come up
	if st := s.Inspectp(id); st.Status.State != "SANDBOX_READY" {
		t.Errorf("the pod after the restart: %+v", st.Status)
	}
	s.MustCrictl("rmp", "-f", id)
}

// A relative --state-dir is taken from the server's working directory once, at start: the netns
// path crictl reports and the CNI_NETNS the plugins saw (as libcni cached it) are absolute.
func TestSharedRelativeStateDir(t *testing.T) {
	work := t.TempDir()
	s := startServerWith(t, newTestNet(t, "e2e-relstate"), serverDirs{stateDir: "relstate", workDir: work})
	s.InstallConf()
	s.WaitNetworkReady(true)
	id := s.Runp(podSpec{Name: "rel"})
	s.PodIP(id)

	want := filepath.Join(work, "relstate", "netns", id)
	if got := s.Inspectp(id).Info.NetNSPath; got != want {
		t.Errorf("crictl inspectp reports netns %q, want the absolute %s", got, want)
	}
	entries := cacheEntriesOf(t, s.CacheDir, id)
	if len(entries) != 1 {
		t.Fatalf("libcni cache entries of %s: %v, want one", id, slices.Collect(maps.Keys(entries)))
	}
	for name, b := range entries {
		var e struct {
			NetNS string `json:"netns"`
		}
		if err := json.Unmarshal([]byte(b), &e); err != nil {
			t.Fatalf("cache entry %s: %v", name, err)
		}
		if e.NetNS != want {
			t.Errorf("cache entry %s: the plugins saw CNI_NETNS %q, want the absolute %s", name, e.NetNS, want)
		}
	}
	s.MustCrictl("rmp", "-f", id)
}

// gc runs `cnishim gc` against the server.
func (s *server) gc() {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(s.T.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, env.Cnishim, "gc", "--listen", "unix://"+s.Sock).CombinedOutput()
	if err != nil {
		s.T.Fatalf("cnishim gc --listen unix://%s: %v: %s", s.Sock, err, out)
	}
}

// attachments is what some attachments hold on the node.
type attachments struct {
	ips   map[string]string   // host-local reservation ("<store>/<ip>") → owner
	cache map[string]string   // libcni cache file → content
	ports map[string][]string // bridge → its ports
}

// takeAttachments reads the attachments of the container IDs in the libcni cache dir, and what
// the networks hold in their host-local stores and on their bridges.
func takeAttachments(t *testing.T, cacheDir string, ids []string, nets ...*testNet) attachments {
	t.Helper()
	var a attachments
	var dirs []string
	a.ports = map[string][]string{}
	for _, n := range nets {
		dirs = append(dirs, n.IPAMDir)
		a.ports[n.Bridge] = framework.BridgePorts(t, n.Bridge)
	}
	st := leakcheck.Take(leakcheck.Scope{HostLocalDirs: dirs})
	if len(st.Problems) > 0 {
		t.Fatalf("read host-local stores: %v", st.Problems)
	}
	a.ips = st.IPOwners
	a.cache = map[string]string{}
	for _, id := range ids {
		maps.Copy(a.cache, cacheEntriesOf(t, cacheDir, id))
	}
	return a
}

// diff lists how b differs from a.
func (a attachments) diff(b attachments) []string {
	var out []string
	cmpMap := func(kind string, x, y map[string]string) {
		for k, v := range x {
			if w, ok := y[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s is gone", kind, k))
			} else if w != v {
				out = append(out, fmt.Sprintf("%s %s changed: %q, was %q", kind, k, w, v))
			}
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s is new", kind, k))
			}
		}
	}
	cmpMap("host-local reservation", a.ips, b.ips)
	cmpMap("libcni cache entry", a.cache, b.cache)
	for br, ports := range a.ports {
		if !slices.Equal(ports, b.ports[br]) {
			out = append(out, fmt.Sprintf("ports of bridge %s: %v, were %v", br, b.ports[br], ports))
		}
	}
	slices.Sort(out)
	return out
}

// cacheEntriesOf returns libcni's cache files of the container ID, by name, with their content.
func cacheEntriesOf(t *testing.T, cacheDir, id string) map[string]string {
	t.Helper()
	dir := filepath.Join(cacheDir, "results")
	files, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.Contains(f.Name(), "-"+id+"-") {
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[f.Name()] = string(b)
		}
	}
	return out
}

// treeOf lists the paths under dir, relative to it.
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// plainAttachment is a netns the test attached to a network with libcni itself, as a runtime
// other than cnishim would.
type plainAttachment struct {
	cni   *libcni.CNIConfig
	list  *libcni.NetworkConfigList
	rt    *libcni.RuntimeConf
	netns string
	ip    net.IP
	net   *testNet
}

var plainSeq atomic.Int32

// attachPlain creates a netns and attaches it to n with libcni's AddNetworkList over cacheDir,
// and registers its DEL, the removal of the netns and of n's bridge at cleanup.
func attachPlain(t *testing.T, cacheDir string, n *testNet) *plainAttachment {
	t.Helper()
	list, err := libcni.ConfListFromBytes([]byte(n.Conflist()))
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("e2e-plain-%d-%d", os.Getpid(), plainSeq.Add(1))
	path, err := netns.Create(t.TempDir(), id)
	if err != nil {
		t.Fatal(err)
	}
	p := &plainAttachment{
		cni:   libcni.NewCNIConfigWithCacheDir([]string{env.CNIBin}, cacheDir, nil),
		list:  list,
		rt:    &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: "eth0"},
		netns: path,
		net:   n,
	}
	suite.mu.Lock()
	suite.needles = append(suite.needles, id)
	suite.mu.Unlock()
	t.Cleanup(func() {
		p.del(t)
		if err := netns.Remove(path); err != nil {
			t.Errorf("remove netns %s: %v", path, err)
		}
		if ports := framework.BridgePorts(t, n.Bridge); len(ports) > 0 {
			t.Errorf("left behind: veths on bridge %s: %v", n.Bridge, ports)
		}
		framework.DeleteBridge(t, n.Bridge)
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := p.cni.AddNetworkList(ctx, list, p.rt)
	if err != nil {
		t.Fatalf("libcni ADD %s to %s: %v", id, n.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil || len(r.IPs) == 0 || !n.Subnet.Contains(r.IPs[0].Address.IP) {
		t.Fatalf("libcni ADD %s to %s: result %v, %v; want an IP in %s", id, n.Name, res, err, n.Subnet)
	}
	p.ip = r.IPs[0].Address.IP
	return p
}

// del detaches the netns with libcni's DelNetworkList; deleting again is harmless.
func (p *plainAttachment) del(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	if err := p.cni.DelNetworkList(ctx, p.list, p.rt); err != nil {
		t.Errorf("libcni DEL %s from %s: %v", p.rt.ContainerID, p.net.Name, err)
	}
}

// holdNetNS opens the netns at path until the test ends and returns a path to it that lasts as
// long (the open file under /proc), whether or not path stays mounted.
func holdNetNS(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
}

// delAttachment deletes a cached attachment with libcni's DelNetworkList, from the
// configuration and arguments cached at its ADD, in the netns at netnsPath.
func delAttachment(t *testing.T, cni *libcni.CNIConfig, a *libcni.NetworkAttachment, netnsPath string) {
	t.Helper()
	list, err := libcni.ConfListFromBytes(a.Config)
	if err != nil {
		t.Errorf("cached config of %s: %v", a.ContainerID, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
	defer cancel()
	rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, NetNS: netnsPath, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
	if err := cni.DelNetworkList(ctx, list, rt); err != nil {
		t.Errorf("libcni DEL %s from %s: %v", a.ContainerID, list.Name, err)
	}
}
