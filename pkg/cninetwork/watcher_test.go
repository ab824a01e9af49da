package cninetwork

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWithWatcher runs the plugin on the real confwatch.Watcher: a pod set up on the network of
// 10-a.conflist is torn down with that configuration after the file was rewritten and then
// deleted, while new pods get the new default.
func TestWithWatcher(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10-a.conflist", bridgeNet)
	// The watcher checks that plugin binaries exist; the fake exec runs them.
	bin := t.TempDir()
	for _, name := range []string{"bridge", "portmap", "bandwidth", "ptp", "macvlan"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/false\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fe := newFakeExec()
	p, err := New(WithConfDir(dir), WithBinDirs(bin), WithCacheDir(t.TempDir()), WithExec(fe), WithoutLoopback())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Status(t.Context()); err != nil {
		t.Fatalf("Status after Run = %v; want ready (Run scans synchronously)", err)
	}
	if _, err := p.SetUpPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}

	// Rewrite net-a as a different chain, and add net-b sorting first.
	write("10-a.conflist", `{"cniVersion":"1.0.0","name":"net-a","plugins":[{"type":"macvlan"}]}`)
	write("05-b.conflist", otherNet)
	if s := p.source.Scan(t.Context()); s.Default == nil || s.Default.Name != "net-b" {
		t.Fatalf("default after rescan = %+v", s.Default)
	}
	if _, err := p.SetUpPod(t.Context(), testPod("s2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "10-a.conflist")); err != nil {
		t.Fatal(err)
	}
	p.source.Scan(t.Context())

	fe.reset()
	if err := p.TearDownPod(t.Context(), testPod("s1")); err != nil {
		t.Fatal(err)
	}
	if err := p.TearDownPod(t.Context(), testPod("s2")); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf(""),
		"DEL bandwidth net-a eth0", "DEL portmap net-a eth0", "DEL bridge net-a eth0",
		"DEL ptp net-b eth0")
	if got := cacheFiles(t, p); !slices.Equal(got, nil) {
		t.Fatalf("cache = %v", got)
	}
}
