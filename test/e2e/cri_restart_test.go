//go:build linux

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
)

// The server is killed with SIGKILL between runp and stopp and restarted: the pod is still
// listed ready with the same IP, its host port still reaches it (the restart's recovery and GC
// took nothing from a live pod), and stopp and rmp then release everything.
func TestCRIKillBetweenRunAndStop(t *testing.T) {
	s := readyServer(t, "e2e-kill")
	hostPort := freeHostPort(t)
	id := s.Runp(podSpec{Name: "survivor", HostPort: hostPort})
	other := s.Runp(podSpec{Name: "bystander"})
	ps := s.Inspectp(id)
	ip := s.PodIP(id)
	greet(t, ps.Info.NetNSPath, "survivor")
	hostAddr := net.JoinHostPort(s.Net.Gateway().String(), fmt.Sprint(hostPort))
	fetch(t, "", hostAddr, "hello from survivor")

	s.Kill()
	if ok, err := netns.IsNetNS(ps.Info.NetNSPath); !ok {
		t.Fatalf("the pod's netns did not survive the server: %v", err)
	}
	s.Start()

	after := s.Inspectp(id)
	if after.Status.State != "SANDBOX_READY" || after.Status.Network == nil || after.Status.Network.IP != ip.String() ||
		after.Info.NetNSPath != ps.Info.NetNSPath {
		t.Fatalf("after the restart: %+v; want ready with IP %s and netns %s", after, ip, ps.Info.NetNSPath)
	}
	fetch(t, "", hostAddr, "hello from survivor")
	// The other pod is untouched as well.
	if st := s.Inspectp(other); st.Status.State != "SANDBOX_READY" {
		t.Fatalf("bystander after the restart: %+v", st.Status)
	}

	s.MustCrictl("stopp", id, other)
	s.MustCrictl("rmp", id, other)
	st := leakcheck.Take(s.scope())
	if len(st.IPs)+len(st.Cache)+len(st.Netns)+len(st.Rules) > 0 {
		t.Fatalf("left after stopp and rmp: IPs %v, cache %v, netns %v, rules %v", st.IPs, st.Cache, st.Netns, st.Rules)
	}
	if entries, err := os.ReadDir(s.StateDir + "/sandboxes"); err != nil || len(entries) != 0 {
		t.Fatalf("sandbox records left: %v, %v", entries, err)
	}
}

// With the conf dir emptied (the network's config gone, NetworkReady false), crictl rmp -f
// still tears the pod down from the config cached at set-up, releasing its IP and rules.
func TestCRIRemoveAfterConfDirEmptied(t *testing.T) {
	s := readyServer(t, "e2e-confgone")
	hostPort := freeHostPort(t)
	id := s.Runp(podSpec{Name: "orphan", HostPort: hostPort})
	s.PodIP(id)
	if st := leakcheck.Take(s.scope()); len(st.IPs) != 1 || len(st.Rules) == 0 {
		t.Fatalf("before removal: IPs %v, rules %v; want the pod's IP and portmap rules", st.IPs, st.Rules)
	}

	entries, err := os.ReadDir(s.ConfDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(s.ConfDir + "/" + e.Name()); err != nil {
			t.Fatal(err)
		}
	}
	s.WaitNetworkReady(false)

	out := s.MustCrictl("rmp", "-f", id)
	if !strings.Contains(out, "Removed sandbox "+id) {
		t.Fatalf("crictl rmp -f printed %q", out)
	}
	if st := leakcheck.Take(s.scope()); len(st.IPs)+len(st.Cache)+len(st.Netns)+len(st.Rules) > 0 {
		t.Fatalf("left after rmp with no config: IPs %v, cache %v, netns %v, rules %v", st.IPs, st.Cache, st.Netns, st.Rules)
	}
}

// A sandbox whose record is lost while the server is down (the server no longer knows it) is
// garbage-collected at the next start: its IP, cache entry, rules and netns are released, while
// a known pod keeps all of its own. cnishim gc run afterwards against the server takes nothing
// from the known pod either.
func TestCRIRestartCollectsUnknownSandbox(t *testing.T) {
	s := readyServer(t, "e2e-gc")
	hostPort := freeHostPort(t)
	lost := s.Runp(podSpec{Name: "lost", HostPort: hostPort})
	kept := s.Runp(podSpec{Name: "kept"})
	keptStatus := s.Inspectp(kept)
	keptIP := s.PodIP(kept)
	greet(t, keptStatus.Info.NetNSPath, "kept")

	s.Kill()
	if err := os.Remove(s.StateDir + "/sandboxes/" + lost + ".json"); err != nil {
		t.Fatal(err)
	}
	s.Start()

	st := leakcheck.Take(s.scope())
	if len(st.IPs) != 1 || !strings.HasSuffix(st.IPs[0], "/"+keptIP.String()) || len(st.Cache) != 1 || !strings.Contains(st.Cache[0], kept) {
		t.Fatalf("after the restart: IPs %v, cache %v; want only the kept pod's %s", st.IPs, st.Cache, keptIP)
	}
	for _, r := range st.Rules {
		if strings.Contains(r, lost) || strings.Contains(r, fmt.Sprintf("dport %d", hostPort)) {
			t.Fatalf("rule of the unknown sandbox left: %s", r)
		}
	}
	if len(st.Netns) != 1 || st.Netns[0] != keptStatus.Info.NetNSPath {
		t.Fatalf("netns mounts after the restart: %v, want only %s", st.Netns, keptStatus.Info.NetNSPath)
	}

	out, err := exec.Command(env.Cnishim, "gc", "--listen", "unix://"+s.Sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 valid sandboxes") {
		t.Fatalf("cnishim gc: %v: %s", err, out)
	}
	fetch(t, "", net.JoinHostPort(keptIP.String(), fmt.Sprint(containerPort)), "hello from kept")
	if st := leakcheck.Take(s.scope()); len(st.IPs) != 1 || len(st.Cache) != 1 {
		t.Fatalf("after cnishim gc: IPs %v, cache %v; want the kept pod's", st.IPs, st.Cache)
	}
	s.MustCrictl("rmp", "-f", kept)
}
