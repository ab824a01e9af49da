//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/nsrun"
)

// readyServer starts a server whose conf dir holds the test network, and waits for it to be
// ready.
func readyServer(t *testing.T, name string) *server {
	t.Helper()
	s := startServer(t, newTestNet(t, name))
	s.InstallConf()
	s.WaitNetworkReady(true)
	return s
}

// greet listens on the container port inside the pod's netns and answers "hello from <name>"
// until the test ends.
func greet(t *testing.T, netnsPath, name string) {
	t.Helper()
	l, err := nsrun.ListenTCP(netnsPath, fmt.Sprintf("0.0.0.0:%d", containerPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go nsrun.Greet(l, "hello from "+name)
}

// fetch connects to addr from the netns at path ("" = the host) and checks the greeting.
func fetch(t *testing.T, path string, addr string, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := nsrun.Fetch(ctx, path, addr)
	if err != nil {
		t.Fatalf("connect to %s from %q: %v", addr, path, err)
	}
	if got != want {
		t.Fatalf("%s answered %q, want %q", addr, got, want)
	}
}

// crictl runp a pod with a host port; inspectp (by ID prefix) shows it ready with an IP from
// the subnet and its netns; the host port, on the host's address on the bridge, reaches a
// listener inside the pod's netns; pods, stopp and rmp take ID prefixes as with containerd.
func TestCRIPodWithHostPort(t *testing.T) {
	s := readyServer(t, "e2e-hostport")
	hostPort := freeHostPort(t)
	id := s.Runp(podSpec{Name: "web", HostPort: hostPort, Labels: map[string]string{"app": "web"}})

	ps := s.Inspectp(id[:12])
	wantNS := filepath.Join(s.StateDir, "netns", id)
	if ps.Status.ID != id || ps.Status.State != "SANDBOX_READY" || ps.Status.Metadata.Name != "web" ||
		ps.Status.Linux.Namespaces.Options.Network != "POD" || ps.Info.NetNSPath != wantNS {
		t.Fatalf("crictl inspectp %s = %+v; want ready sandbox %s with netns %s", id[:12], ps, id, wantNS)
	}
	ip := s.PodIP(id)

	greet(t, ps.Info.NetNSPath, "web")
	fetch(t, ps.Info.NetNSPath, net.JoinHostPort(ip.String(), fmt.Sprint(containerPort)), "hello from web")
	fetch(t, "", net.JoinHostPort(s.Net.Gateway().String(), fmt.Sprint(hostPort)), "hello from web")

	if out := s.MustCrictl("pods"); !strings.Contains(out, id[:13]) || !strings.Contains(out, "Ready") {
		t.Fatalf("crictl pods does not list %s as ready:\n%s", id[:13], out)
	}
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q", "--id", id[:8])); out != id {
		t.Fatalf("crictl pods --id %s = %q, want %s", id[:8], out, id)
	}
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q", "--label", "app=web", "--state", "ready")); out != id {
		t.Fatalf("crictl pods --label app=web --state ready = %q, want %s", out, id)
	}
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q", "--label", "app=db")); out != "" {
		t.Fatalf("crictl pods --label app=db = %q, want nothing", out)
	}

	s.MustCrictl("stopp", id[:12])
	ps = s.Inspectp(id)
	if ps.Status.State != "SANDBOX_NOTREADY" || ps.Status.Network != nil {
		t.Fatalf("after stopp: %+v", ps.Status)
	}
	if _, err := os.Stat(wantNS); !os.IsNotExist(err) {
		t.Fatalf("netns %s still there after stopp: %v", wantNS, err)
	}
	s.MustCrictl("stopp", id) // again: stopping is idempotent
	s.MustCrictl("rmp", id[:12])
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q")); out != "" {
		t.Fatalf("crictl pods after rmp = %q", out)
	}
}

// Two pods on the bridge reach each other over TCP, each from inside its own netns.
func TestCRITwoPodsReachEachOther(t *testing.T) {
	s := readyServer(t, "e2e-twopods")
	a := s.Runp(podSpec{Name: "pod-a"})
	b := s.Runp(podSpec{Name: "pod-b"})
	psA, psB := s.Inspectp(a), s.Inspectp(b)
	ipA, ipB := s.PodIP(a), s.PodIP(b)
	if ipA.Equal(ipB) {
		t.Fatalf("both pods got %s", ipA)
	}
	greet(t, psA.Info.NetNSPath, "pod-a")
	greet(t, psB.Info.NetNSPath, "pod-b")
	fetch(t, psA.Info.NetNSPath, net.JoinHostPort(ipB.String(), fmt.Sprint(containerPort)), "hello from pod-b")
	fetch(t, psB.Info.NetNSPath, net.JoinHostPort(ipA.String(), fmt.Sprint(containerPort)), "hello from pod-a")

	s.MustCrictl("rmp", "-f", a, b)
	if out := strings.TrimSpace(s.MustCrictl("pods", "-q")); out != "" {
		t.Fatalf("crictl pods after rmp = %q", out)
	}
}

// cnishim check runs CNI CHECK through the server on a pod's every network, with real plugins:
// ok while the pod's network is as its plugins made it; once the pod's interface is gone, an
// error naming the network; NotFound after the pod is stopped.
func TestCRICheckPod(t *testing.T) {
	s := readyServer(t, "e2e-check")
	id := s.Runp(podSpec{Name: "checked"})
	ns := s.Inspectp(id).Info.NetNSPath
	check := func() (string, error) {
		out, err := exec.CommandContext(t.Context(), env.Cnishim, "check", "--listen", "unix://"+s.Sock, "--pod-sandbox-id", id[:12]).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := check(); err != nil || out != "ok" {
		t.Fatalf("cnishim check of a pod as set up: %q, %v; want ok", out, err)
	}
	// The bridge plugin's CHECK finds the pod's eth0 gone.
	if out, err := exec.Command("nsenter", "--net="+ns, "ip", "link", "del", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("delete eth0 in the pod: %v: %s", err, out)
	}
	if out, err := check(); err == nil || !strings.Contains(out, fmt.Sprintf("network %q", s.Net.Name)) {
		t.Fatalf("cnishim check of a pod without its eth0: %q, %v; want an error naming network %q", out, err, s.Net.Name)
	}
	s.MustCrictl("stopp", id)
	if out, err := check(); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("cnishim check of a stopped pod: %q, %v; want NotFound", out, err)
	}
	s.MustCrictl("rmp", id)
}
