//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/internal/testing/roottest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// cnishim gc --sandbox-ids runs a pass here, by the records in --state-dir: a pod missing from
// the list loses its IP and cache entry, a listed one keeps them.
func TestLocalGC(t *testing.T) {
	roottest.Require(t)
	bin := cniBinDir(t)
	dir := t.TempDir()
	conf, cache, ipam, state := filepath.Join(dir, "net.d"), filepath.Join(dir, "cache"), filepath.Join(dir, "ipam"), filepath.Join(dir, "state")
	nsDir := filepath.Join(state, "netns")
	const bridge = "cnishim-gcut0"
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	list := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"gcnet","plugins":[{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.99.251.0/24"}]]}}]}`, bridge, ipam)
	if err := os.WriteFile(filepath.Join(conf, "10-gc.conflist"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := cninetwork.New(cninetwork.WithConfDir(conf), cninetwork.WithBinDirs(bin), cninetwork.WithCacheDir(cache),
		cninetwork.WithStateDir(networkRecordsDir(state)))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var pods []*cninetwork.Pod
	for _, name := range []string{"kept", "gone"} {
		id := sandboxstore.NewID()
		path, err := netns.Create(nsDir, id)
		if err != nil {
			t.Fatal(err)
		}
		pod := &cninetwork.Pod{SandboxID: id, Name: name, Namespace: "gc", UID: "uid-" + name, NetNS: path}
		t.Cleanup(func() {
			_ = p.TearDownPod(t.Context(), pod)
			_ = netns.Remove(path)
		})
		if _, err := p.SetUpPod(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	scope := leakcheck.Scope{HostLocalDirs: []string{ipam}, CacheDir: cache}
	if st := leakcheck.Take(scope); len(st.IPs) != 2 || len(st.Cache) != 2 {
		t.Fatalf("before GC: IPs %v, cache %v", st.IPs, st.Cache)
	}

	var stdout, stderr bytes.Buffer
	args := []string{"gc", "--sandbox-ids", pods[0].SandboxID, "--cni-conf-dir", conf, "--cni-bin-dir", bin,
		"--cni-cache-dir", cache, "--state-dir", state, "--listen", "unix://" + filepath.Join(dir, "no-server.sock")}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("gc exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "GC done: 1 valid sandboxes") {
		t.Fatalf("gc printed %q", stdout.String())
	}
	st := leakcheck.Take(scope)
	if len(st.IPs) != 1 || len(st.Cache) != 1 || !strings.Contains(st.Cache[0], pods[0].SandboxID) {
		t.Fatalf("after GC: IPs %v, cache %v; want only the kept pod's", st.IPs, st.Cache)
	}
}
