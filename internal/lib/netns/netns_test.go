//go:build linux

package netns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/cnishim/cnishim/internal/testing/roottest"
)

func TestCreateRemove(t *testing.T) {
	roottest.Require(t)
	dir := t.TempDir()
	path, err := Create(dir, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(path) })

	ok, err := IsNetNS(path)
	if err != nil || !ok {
		t.Fatalf("IsNetNS(%s) = %v, %v; want true", path, ok, err)
	}
	// The namespace is a new one: it holds only lo, which differs from the host's.
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	host, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	if h.Equal(host) {
		t.Fatal("created namespace is the host's")
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	links, err := nh.LinkList()
	nh.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("links in new netns = %v; want only lo", links)
	}
	if got, _ := Mounted(dir); len(got) != 1 {
		t.Fatalf("Mounted = %v; want [%s]", got, path)
	}

	if _, err := Create(dir, "pod1"); err == nil {
		t.Fatal("Create of an existing name succeeded")
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("stat after Remove: %v; want not exist", err)
	}
	if err := Remove(path); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if got, _ := Mounted(dir); len(got) != 0 {
		t.Fatalf("Mounted after Remove = %v", got)
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := Create(dir, name); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Error("a rejected name left a file")
	}
}

func TestIsNetNSRefuses(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       string
		notExist   bool
	}{
		{"plain file", plain, "not a network namespace", false},
		{"missing", filepath.Join(t.TempDir(), "missing"), "netns ", true},
		{"mount namespace", "/proc/self/ns/mnt", "not a network namespace (a namespace of another kind)", false},
		{"procfs file", "/proc/self/status", "not a network namespace", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := IsNetNS(tt.path)
			if ok || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("IsNetNS(%s) = %v, %v; want false and an error saying %q", tt.path, ok, err, tt.want)
			}
			if got := errors.Is(err, os.ErrNotExist); got != tt.notExist {
				t.Fatalf("IsNetNS(%s) error %v: errors.Is(os.ErrNotExist) = %v; want %v", tt.path, err, got, tt.notExist)
			}
		})
	}
	// The calling thread's own namespace, through procfs, is one.
	if ok, err := IsNetNS("/proc/self/ns/net"); !ok || err != nil {
		t.Fatalf("IsNetNS(/proc/self/ns/net) = %v, %v; want true", ok, err)
	}
}

func TestDoErrors(t *testing.T) {
	if err := Do("/nonexistent/netns", func() error { return nil }); err == nil {
		t.Fatal("Do on a missing path succeeded")
	}
	f, err := os.CreateTemp(t.TempDir(), "notns")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Do(f.Name(), func() error { return nil }); err == nil {
		t.Fatal("Do on a plain file succeeded")
	}
}
