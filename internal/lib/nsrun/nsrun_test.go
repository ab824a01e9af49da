//go:build linux

package nsrun

import (
	"context"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/testing/roottest"
	"github.com/vishvananda/netlink"
)

func TestListenAndFetchInsideNamespace(t *testing.T) {
	roottest.Require(t)
	path, err := netns.Create(t.TempDir(), "ns1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Remove(path) })
	if err := netns.Do(path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}

	l, err := ListenTCP(path, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go Greet(l, "hello from ns1")
	addr := l.Addr().String()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := Fetch(ctx, path, addr)
	if err != nil || got != "hello from ns1" {
		t.Fatalf("Fetch inside the namespace = %q, %v", got, err)
	}
	// The listener lives in the namespace: from the host, the same address reaches nothing of it.
	if got, err := Fetch(ctx, "", addr); err == nil && got == "hello from ns1" {
		t.Fatal("the namespace's listener answered from the host namespace")
	}
}
