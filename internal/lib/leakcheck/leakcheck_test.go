//go:build linux

package leakcheck

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestTakeAndLeaks(t *testing.T) {
	hl := t.TempDir()
	cache := t.TempDir()
	store := filepath.Join(hl, "net1")
	if err := os.MkdirAll(filepath.Join(cache, "results"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	// host-local keeps bookkeeping files beside the reservations; they are not leaks.
	for _, f := range []string{"lock", "last_reserved_ip.0"} {
		if err := os.WriteFile(filepath.Join(store, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	scope := Scope{HostLocalDirs: []string{hl}, CacheDir: cache}
	before := Take(scope)
	if l := Leaks(before, before); len(l) != 0 {
		t.Fatalf("Leaks(s, s) = %v; want none", l)
	}

	if err := os.WriteFile(filepath.Join(store, "10.1.2.3"), []byte("id\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An empty reservation: host-local killed between creating the file and writing it.
	if err := os.WriteFile(filepath.Join(store, "fd00::3"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "results", "net1-abc-eth0"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := Leaks(before, Take(scope))
	want := []string{
		`host-local IP: net1/10.1.2.3 (reserved for "id eth0")`,
		"host-local IP: net1/fd00::3 (empty reservation: its plugin died before writing the owner)",
		"libcni cache entry: net1-abc-eth0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Leaks = %q; want %q", got, want)
	}
}
