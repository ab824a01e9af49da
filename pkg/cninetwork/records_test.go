package cninetwork

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/atomicfile/synctrace"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// recordFiles lists the sandboxes p holds a record of.
func recordFiles(t *testing.T, p *Plugin) []string {
	t.Helper()
	ids, err := p.records.list()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// writeRecord writes data as sandbox id's set-up record, as a crash or a power loss may leave
// it, and returns the record's path.
func writeRecord(t *testing.T, p *Plugin, id string, data []byte) string {
	t.Helper()
	path := p.records.path(id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCutOffSetUpTornDownWithItsOwnConfig: a process dies while a pod's chain runs, so libcni
// caches nothing for it; the default network then changes. The next process tears the pod down
// with the configuration and arguments the cut-off set-up ran with, not the new default.
func TestCutOffSetUpTornDownWithItsOwnConfig(t *testing.T) {
	cacheDir := t.TempDir()
	fe := newFakeExec()
	a, b := network(t, bridgeNet), network(t, otherNet)
	src1 := newFakeSource()
	src1.publish(nil, a, b)
	first := newTestPlugin(t, fe, src1, WithCacheDir(cacheDir))

	// portmap's ADD hangs: the chain is cut off after bridge made its veth and took an IP.
	inPortmap, hang := make(chan struct{}), make(chan struct{})
	fe.set("portmap", "ADD", reply{block: hang, hook: func(context.Context, execCall) { close(inPortmap) }})
	pod := testPod("s1")
	pod.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 8080}}
	ctx, cancel := context.WithCancel(t.Context())
	setUp := make(chan error, 1)
	go func() {
		_, err := first.SetUpPod(ctx, pod)
		setUp <- err
	}()
	t.Cleanup(func() { cancel(); close(hang); <-setUp })
	<-inPortmap
	if got := recordFiles(t, first); len(got) != 1 || got[0] != "s1" {
		t.Fatalf("set-up records while the chain runs = %v; want [s1]", got)
	}
	if got := cacheFiles(t, first); len(got) != 0 {
		t.Fatalf("libcni cache while the chain runs = %v; want nothing (the premise of this test)", got)
	}

	// The process is gone (first is never used again); the default is now net-b, and net-a's
	// file was deleted.
	src2 := newFakeSource()
	src2.publish(nil, b)
	second := newTestPlugin(t, fe, src2, WithCacheDir(cacheDir))

	_, err := second.SetUpPod(t.Context(), testPod("s1"))
	if !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("SetUpPod of the cut-off sandbox = %v; want ErrInvalidPod saying its set-up was cut off", err)
	}

	fe.reset()
	if err := second.TearDownPod(t.Context(), &Pod{SandboxID: "s1", NetNS: netnsPath}); err != nil {
		t.Fatal(err)
	}
	wantSetUpsDel(t, fe.callsOf(""))
	if got := recordFiles(t, second); len(got) != 0 {
		t.Fatalf("set-up records after the teardown = %v", got)
	}
	fe.reset()
	if err := second.TearDownPod(t.Context(), &Pod{SandboxID: "s1", NetNS: netnsPath}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, fe.callsOf("")) // nothing recorded or cached any more
}

// TestSetUpRecordLifetime: a set-up that fails and is rolled back leaves no record; one that
// succeeds, or whose rollback fails, keeps it, and the teardown, or a GC once the sandbox is
// gone, deletes with the recorded configuration and removes it.
func TestSetUpRecordLifetime(t *testing.T) {
	addFails := &types.Error{Code: 5, Msg: "add failed"}
	for _, tc := range []struct {
		name      string
		addErr    error
		delErr    error
		wantKept  bool
		viaGC     bool
		wantCalls []string // of the later teardown or GC, after the default moved to net-a
	}{
		{name: "success, teardown", wantKept: true, wantCalls: []string{"DEL ptp net-b eth0"}},
		{name: "success, GC", wantKept: true, viaGC: true, wantCalls: []string{"DEL ptp net-b eth0"}},
		{name: "rolled back", addErr: addFails},
		{name: "rollback failed, teardown", addErr: addFails, delErr: &types.Error{Code: 5, Msg: "del failed"}, wantKept: true,
			wantCalls: []string{"DEL ptp net-b eth0"}},
		{name: "rollback failed, GC", addErr: addFails, delErr: &types.Error{Code: 5, Msg: "del failed"}, wantKept: true, viaGC: true,
			wantCalls: []string{"DEL ptp net-b eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe, src := newFakeExec(), newFakeSource()
			a, b := network(t, bridgeNet), network(t, otherNet)
			src.publish(nil, b, a)
			p := newTestPlugin(t, fe, src)
			fe.set("ptp", "ADD", reply{err: tc.addErr, hook: func(context.Context, execCall) {
				if got := recordFiles(t, p); len(got) != 1 {
					t.Errorf("set-up records during ADD = %v; want the pod's", got)
				}
			}})
			fe.set("ptp", "DEL", reply{err: tc.delErr})
			_, err := p.SetUpPod(t.Context(), testPod("s1"))
			if (err != nil) != (tc.addErr != nil) {
				t.Fatalf("SetUpPod = %v", err)
			}
			if got := recordFiles(t, p); (len(got) == 1) != tc.wantKept {
				t.Fatalf("set-up records after SetUpPod = %v; want kept: %v", got, tc.wantKept)
			}
			if !tc.wantKept {
				return
			}
			src.publish(nil, a, b)
			fe.set("ptp", "DEL", reply{})
			fe.reset()
			if tc.viaGC {
				err = p.GC(t.Context(), nil)
			} else {
				err = p.TearDownPod(t.Context(), testPod("s1"))
			}
			if err != nil {
				t.Fatal(err)
			}
			wantCalls(t, fe.callsOf("DEL"), tc.wantCalls...)
			if got := recordFiles(t, p); len(got) != 0 {
				t.Fatalf("set-up records after the teardown = %v", got)
			}
		})
	}
}

// TestSetUpRecordCorrupt: a record that cannot be read fails the teardown with its path, rather
// than tearing down with another configuration.
func TestSetUpRecordCorrupt(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, otherNet))
	p := newTestPlugin(t, fe, src)
	path := writeRecord(t, p, "s1", []byte(`{"kind":`))
	err := p.TearDownPod(t.Context(), testPod("s1"))
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("TearDownPod = %v; want an error naming %s", err, path)
	}
	if calls := fe.callsOf(""); len(calls) != 0 {
		t.Fatalf("plugin calls = %v; want none", summary(t, calls))
	}

	// An empty record, as a power loss could leave of one written just before it by a version
	// that did not sync its records: the teardown goes on without it (here nothing else is
	// known of the sandbox, so no DEL) and removes it.
	writeRecord(t, p, "s1", nil)
	if err := p.TearDownPod(t.Context(), testPod("s1")); err != nil {
		t.Fatalf("TearDownPod with an empty record: %v", err)
	}
	if calls := fe.callsOf("DEL"); len(calls) != 0 {
		t.Fatalf("TearDownPod with an empty record and nothing cached ran %v", summary(t, calls))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("empty record still there after the teardown: %v", err)
	}
}

// TestSetUpRecordTempFiles: list removes a temporary file of put once it is a minute old (a
// put cut off by a crash), never a fresh one (a put under way), and never lists either.
func TestSetUpRecordTempFiles(t *testing.T) {
	s := recordStore{dir: t.TempDir()}
	if err := s.put("s1", nil); err != nil {
		t.Fatal(err)
	}
	old, fresh := filepath.Join(s.dir, ".s2.123"), filepath.Join(s.dir, ".s3.456")
	for _, f := range []string{old, fresh} {
		if err := os.WriteFile(f, []byte(`{"kind":`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	ids, err := s.list()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"s1"}) {
		t.Fatalf("list = %v; want [s1]", ids)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("abandoned temporary file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file: %v", err)
	}
}

// TestGCRemovesEmptySetUpRecord: GC deletes nothing by an empty record (it names no
// configuration) and removes it, so it does not come back in every GC.
func TestGCRemovesEmptySetUpRecord(t *testing.T) {
	fe, src := newFakeExec(), newFakeSource()
	src.publish(nil, network(t, bridgeNet))
	p := newTestPlugin(t, fe, src)
	path := writeRecord(t, p, "s9", nil)
	if err := p.GC(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if dels := fe.callsOf("DEL"); len(dels) != 0 {
		t.Fatalf("GC ran DELs for an empty record: %v", summary(t, dels))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("empty record still there after GC: %v", err)
	}
}

// TestRecordsDurable: put and remove are on the disk when they return. put syncs the record's
// data before renaming it into place and the directory after (and, the first time, the parent
// of the directory it creates), so a power cut after a put leaves the whole record, never an
// empty one that no teardown would act on; remove syncs the directory, so a removed record
// does not come back.
func TestRecordsDurable(t *testing.T) {
	parent := t.TempDir()
	s := recordStore{dir: filepath.Join(parent, "attachments")} // put creates it
	att := func(network string) []*libcni.NetworkAttachment {
		return []*libcni.NetworkAttachment{{ContainerID: "s1", Network: network, IfName: "eth0", Config: []byte(`{"name":"` + network + `"}`)}}
	}
	encoded := func(atts []*libcni.NetworkAttachment) string {
		data, err := json.Marshal(record{Kind: recordKind, SandboxID: "s1", Attachments: atts})
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	// Each sync is shown as what was synced ("parent", "dir" or "data") and what the record
	// file held right then ("-" for no file).
	type step struct{ synced, held string }
	for _, tc := range []struct {
		name string
		op   func() error
		data string // what the synced data must be
		want []step
	}{
		{name: "first put", op: func() error { return s.put("s1", att("net-a")) }, data: encoded(att("net-a")),
			want: []step{{"parent", "-"}, {"data", "-"}, {"dir", encoded(att("net-a"))}}},
		{name: "put replaces", op: func() error { return s.put("s1", att("net-b")) }, data: encoded(att("net-b")),
			want: []step{{"data", encoded(att("net-a"))}, {"dir", encoded(att("net-b"))}}},
		{name: "remove", op: func() error { return s.remove("s1") },
			want: []step{{"dir", "-"}}},
		{name: "remove again", op: func() error { return s.remove("s1") },
			want: []step{{"dir", "-"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				got []step
			)
			see := func(sy synctrace.Sync) {
				st := step{synced: "data", held: "-"}
				switch {
				case sy.Dir && sy.Path == parent:
					st.synced = "parent"
				case sy.Dir && sy.Path == s.dir:
					st.synced = "dir"
				case sy.Dir:
					t.Errorf("synced directory %s", sy.Path)
				case filepath.Dir(sy.Path) != s.dir || sy.Path == s.path("s1"):
					t.Errorf("synced %s; want a temporary file beside the record", sy.Path)
				default:
					if data, err := os.ReadFile(sy.Path); err != nil || string(data) != tc.data {
						t.Errorf("synced %s holding %q, %v; want %q", sy.Path, data, err, tc.data)
					}
				}
				if data, err := os.ReadFile(s.path("s1")); err == nil {
					st.held = string(data)
				}
				mu.Lock()
				got = append(got, st)
				mu.Unlock()
			}
			defer synctrace.Watch(parent, see)()
			defer synctrace.Watch(s.dir, see)()
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("syncs = %q;\nwant %q", got, tc.want)
			}
		})
	}
}
