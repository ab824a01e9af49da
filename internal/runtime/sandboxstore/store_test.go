package sandboxstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/atomicfile/synctrace"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func record(id, name string, attempt uint32, created int64) Record {
	return Record{
		ID:        id,
		State:     StateCreating,
		CreatedAt: created,
		Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name, Attempt: attempt},
			Labels:   map[string]string{"app": name},
			PortMappings: []*runtimeapi.PortMapping{
				{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353},
			},
		},
	}
}

func id(c byte) string { return strings.Repeat(string(c), 64) }

func TestCreateGetUpdateDeleteReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandboxes")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	a := record("a"+id('1')[1:], "pod-a", 0, 2)
	b := record("a"+id('2')[1:], "pod-b", 0, 1)
	for _, r := range []Record{a, b} {
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	a.State, a.IPs, a.NetNSPath = StateReady, []string{"10.88.0.2"}, "/run/x"
	if err := s.Update(a); err != nil {
		t.Fatal(err)
	}

	// A second store on the same directory sees exactly what the first wrote.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateReady || got.IPs[0] != "10.88.0.2" || got.NetNSPath != "/run/x" ||
		got.Config.GetMetadata().GetName() != "pod-a" || got.Config.GetLabels()["app"] != "pod-a" ||
		got.Config.GetPortMappings()[0].GetProtocol() != runtimeapi.Protocol_UDP ||
		got.Config.GetPortMappings()[0].GetHostPort() != 5353 {
		t.Fatalf("reloaded record = %+v (config %v)", got, got.Config)
	}
	list := s2.List()
	if len(list) != 2 || list[0].ID != b.ID || list[1].ID != a.ID {
		t.Fatalf("List order = %v, want oldest (pod-b) first", list)
	}

	if err := s2.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s2.Delete(a.ID); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.ID+".json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record file still there after Delete: %v", err)
	}
	// The name is free again.
	a2 := record(id('3'), "pod-a", 0, 3)
	if err := s2.Create(a2); err != nil {
		t.Fatalf("Create after Delete freed the name: %v", err)
	}
}

func TestGetPrefix(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"abc" + id('0')[3:], "abd" + id('0')[3:], "f" + id('0')[1:]}
	for i, sid := range ids {
		if err := s.Create(record(sid, "pod"+string(rune('a'+i)), 0, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, query, want string
		wantErr           error
	}{
		{"full ID", ids[0], ids[0], nil},
		{"unique prefix", "abc", ids[0], nil},
		{"one character", "f", ids[2], nil},
		{"ambiguous prefix", "ab", "", ErrAmbiguous},
		{"unknown", "0", "", ErrNotFound},
		{"empty", "", "", ErrNotFound},
		{"longer than any ID", ids[0] + "0", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Get(tc.query)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get(%q) error = %v, want %v", tc.query, err, tc.wantErr)
			}
			if got.ID != tc.want {
				t.Fatalf("Get(%q) = %q, want %q", tc.query, got.ID, tc.want)
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(record(id('1'), "web", 0, 1)); err != nil {
		t.Fatal(err)
	}
	noMeta := record(id('5'), "x", 0, 1)
	noMeta.Config = &runtimeapi.PodSandboxConfig{}
	badState := record(id('6'), "y", 0, 1)
	badState.State = "running"
	tests := []struct {
		name    string
		r       Record
		wantErr error
		wantMsg string
	}{
		{"same ID", record(id('1'), "other", 0, 1), ErrExists, ""},
		{"same name, namespace, UID and attempt", record(id('2'), "web", 0, 1), ErrNameReserved, id('1')},
		{"short ID", record("abc", "z", 0, 1), nil, "64 hex"},
		{"non-hex ID", record(id('g'), "z", 0, 1), nil, "64 hex"},
		{"no metadata", noMeta, nil, "no metadata"},
		{"unknown state", badState, nil, "unknown state"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Create(tc.r)
			if err == nil {
				t.Fatal("Create succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
	// Another attempt of the same pod is a different name.
	if err := s.Create(record(id('3'), "web", 1, 1)); err != nil {
		t.Fatalf("attempt 1: %v", err)
	}
	if n := len(s.List()); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
}

func TestOpenCleansTempAndRejectsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(record(id('1'), "web", 0, 1)); err != nil {
		t.Fatal(err)
	}
	// A write cut off before its rename leaves only a temporary file: one named as this
	// version names them, and one as earlier versions did.
	tmps := []string{filepath.Join(dir, "."+id('2')+".json.tmp-123"), filepath.Join(dir, ".tmp-"+id('3')+"-123")}
	for _, tmp := range tmps {
		if err := os.WriteFile(tmp, []byte(`{"id":`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tmp := range tmps {
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover temporary file not removed: %v", err)
		}
	}
	if len(s2.List()) != 1 {
		t.Fatalf("records = %v", s2.List())
	}

	bad := filepath.Join(dir, id('4')+".json")
	if err := os.WriteFile(bad, []byte(`{"id":"`+id('4')+`","state":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Open with a corrupt record: %v, want an error naming %s", err, bad)
	}
	if err := os.WriteFile(bad, []byte(`{"id":"`+id('5')+`","state":"ready","config":{"metadata":{"name":"x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "holds ID") {
		t.Fatalf("Open with a misnamed record: %v", err)
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if len(a) != 64 || a == b || strings.ToLower(a) != a {
		t.Fatalf("NewID = %q, %q", a, b)
	}
}

// Creates of different sandboxes run concurrently; two creates of one name race and exactly
// one wins.
func TestConcurrentCreates(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	errs := make(chan error, 2*n)
	for i := range n {
		for range 2 {
			go func() { errs <- s.Create(record(NewID(), "pod", uint32(i), int64(i))) }()
		}
	}
	reserved := 0
	for range 2 * n {
		if err := <-errs; errors.Is(err, ErrNameReserved) {
			reserved++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if reserved != n || len(s.List()) != n {
		t.Fatalf("%d name conflicts and %d records, want %d of each", reserved, len(s.List()), n)
	}
	s2, err := Open(s.Dir())
	if err != nil || len(s2.List()) != n {
		t.Fatalf("reopened: %d records, %v", len(s2.List()), err)
	}
}

// TestListOrderAndCopies checks that List returns every record oldest first (ties by ID),
// as copies that callers may change without changing the store, and the record as last
// updated.
func TestListOrderAndCopies(t *testing.T) {
	for _, c := range []struct {
		name    string
		records []Record // created in this order
		want    []string // IDs in List order
	}{
		{"none", nil, []string{}},
		{"by creation time", []Record{
			record(id('3'), "c", 0, 30), record(id('1'), "a", 0, 10), record(id('2'), "b", 0, 20),
		}, []string{id('1'), id('2'), id('3')}},
		{"ties by ID", []Record{
			record(id('b'), "b", 0, 5), record(id('a'), "a", 0, 5), record(id('0'), "z", 0, 1), record(id('c'), "c", 0, 5),
		}, []string{id('0'), id('a'), id('b'), id('c')}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range c.records {
				if err := s.Create(r); err != nil {
					t.Fatal(err)
				}
			}
			got := []string{}
			for _, r := range s.List() {
				got = append(got, r.ID)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("List IDs = %v, want %v", got, c.want)
			}
			if len(c.records) == 0 {
				return
			}
			first := s.List()[0]
			first.State, first.IPs = StateNotReady, []string{"192.0.2.1"}
			upd := s.List()[0]
			if upd.State != StateCreating || upd.IPs != nil {
				t.Fatalf("changing a listed record changed the store: %+v", upd)
			}
			upd.State = StateReady
			if err := s.Update(upd); err != nil {
				t.Fatal(err)
			}
			if got := s.List()[0]; got.ID != c.want[0] || got.State != StateReady {
				t.Fatalf("after Update, List()[0] = %+v, want %s ready", got, c.want[0])
			}
			// A record created or deleted after a List is seen by the next.
			older := record(id('f'), "older", 0, 0)
			if err := s.Create(older); err != nil {
				t.Fatal(err)
			}
			if got := s.List(); len(got) != len(c.want)+1 || got[0].ID != older.ID {
				t.Fatalf("after Create, List = %v, want %s first of %d", got, older.ID, len(c.want)+1)
			}
			if err := s.Delete(older.ID); err != nil {
				t.Fatal(err)
			}
			if got := s.List(); len(got) != len(c.want) || got[0].ID != c.want[0] {
				t.Fatalf("after Delete, List = %v, want %d records from %s", got, len(c.want), c.want[0])
			}
		})
	}
}

// TestListWhileChanging lists while other goroutines create, update and delete records: every
// List is in order, and the last one, after the changes, holds exactly what remains.
func TestListWhileChanging(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := record(NewID(), fmt.Sprintf("w%d-%d", w, i), 0, int64(each-i))
				if err := s.Create(r); err != nil {
					t.Error(err)
					return
				}
				r.State = StateReady
				if err := s.Update(r); err != nil {
					t.Error(err)
				}
				if i%2 == 1 {
					if err := s.Delete(r.ID); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for listing := true; listing; {
		select {
		case <-done:
			listing = false
		default:
		}
		list := s.List()
		if !slices.IsSortedFunc(list, func(a, b Record) int { return compareRecords(&a, &b) }) {
			t.Fatalf("List out of order: %v", list)
		}
	}
	list := s.List()
	if len(list) != writers*(each-each/2) {
		t.Fatalf("List after the changes has %d records, want %d", len(list), writers*(each-each/2))
	}
	for _, r := range list {
		if r.State != StateReady {
			t.Errorf("record %s is %s, want ready (its last update)", r.ID, r.State)
		}
	}
}

// TestWritesDurable: Create, Update and Delete are on the disk when they return: a record's
// data is synced before it is renamed into place, and the directory after every rename or
// removal, by the same helper and rule as the network plugin's records.
func TestWritesDurable(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	created := record(id('1'), "web", 0, 1)
	ready := created
	ready.State = StateReady
	encoded := func(r Record) string {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	// Each sync is shown as what was synced ("dir" or "data") and what the record file held
	// right then ("-" for no file).
	type step struct{ synced, held string }
	path := filepath.Join(dir, id('1')+".json")
	for _, tc := range []struct {
		name string
		op   func() error
		data string // what the synced data must be
		want []step
	}{
		{name: "create", op: func() error { return s.Create(created) }, data: encoded(created),
			want: []step{{"data", "-"}, {"dir", encoded(created)}}},
		{name: "update", op: func() error { return s.Update(ready) }, data: encoded(ready),
			want: []step{{"data", encoded(created)}, {"dir", encoded(ready)}}},
		{name: "delete", op: func() error { return s.Delete(id('1')) },
			want: []step{{"dir", "-"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				got []step
			)
			defer synctrace.Watch(dir, func(sy synctrace.Sync) {
				st := step{synced: "dir", held: "-"}
				if !sy.Dir {
					st.synced = "data"
					if sy.Path == path {
						t.Errorf("synced the record itself; want a temporary file")
					}
					if data, err := os.ReadFile(sy.Path); err != nil || string(data) != tc.data {
						t.Errorf("synced %s holding %q, %v; want %q", sy.Path, data, err, tc.data)
					}
				}
				if data, err := os.ReadFile(path); err == nil {
					st.held = string(data)
				}
				mu.Lock()
				got = append(got, st)
				mu.Unlock()
			})()
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
