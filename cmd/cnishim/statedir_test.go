//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A second lock of a held state dir fails naming the holder and creates nothing; once the
// holder releases it, the dir can be locked again.
func TestLockStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	holder := stateHolder{PID: os.Getpid(), Command: "cnishim serve", Listen: "unix:///run/x.sock"}
	release, err := lockStateDir(dir, holder)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	_, err = lockStateDir(dir, stateHolder{PID: 1, Command: "cnishim serve", Listen: "unix:///run/y.sock"})
	if err == nil {
		t.Fatal("a held state dir was locked twice")
	}
	for _, want := range []string{"pid " + strconv.Itoa(os.Getpid()), "unix:///run/x.sock", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("the refused lock changed the dir: %v -> %v", before, after)
	}
	release()
	release2, err := lockStateDir(dir, holder)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

func TestAbsPaths(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	one, list := "rel/state", "/opt/cni/bin, bin2"
	if err := absPaths(&one, &list); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "rel/state"); one != want {
		t.Errorf("abs of rel/state = %q, want %q", one, want)
	}
	if want := "/opt/cni/bin," + filepath.Join(wd, "bin2"); list != want {
		t.Errorf("abs of the list = %q, want %q", list, want)
	}
}

// The socket is created 0600 without touching the process's umask, and removed on close.
func TestListenUnixMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "cri.sock")
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	lis, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if now := unix.Umask(0o022); now != 0o022 {
		t.Errorf("umask after listen = %o, want it untouched (022)", now)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want a 0600 socket", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("socket dir holds %v, want the socket alone", entries)
	}
	if _, err := listenUnix(path); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("second listen = %v, want another server listening", err)
	}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket after close: %v", err)
	}
}
