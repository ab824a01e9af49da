package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/atomicfile/synctrace"
)

// step is what a test sees at one sync: which file or directory was synced, and the target
// file as the disk held it right then ("-" for no file).
type step struct {
	synced string // "file" for a temporary file of the target, or a directory's path
	target string
}

// watch records the syncs made in dir from now on, with what the file at target held at each.
func watch(t *testing.T, dir, target string) func() []step {
	t.Helper()
	var (
		mu    sync.Mutex
		steps []step
	)
	stop := synctrace.Watch(dir, func(s synctrace.Sync) {
		st := step{synced: s.Path, target: "-"}
		if data, err := os.ReadFile(target); err == nil {
			st.target = string(data)
		}
		if !s.Dir {
			st.synced = "file"
			// The data synced is the whole new content, and the file is not the target.
			if filepath.Dir(s.Path) != dir || !IsTemp(filepath.Base(s.Path)) {
				t.Errorf("synced %s; want a temporary file in %s", s.Path, dir)
			}
		}
		mu.Lock()
		steps = append(steps, st)
		mu.Unlock()
	})
	t.Cleanup(stop)
	return func() []step {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(steps)
	}
}

// tempFiles lists the hidden files in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if IsTemp(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old      string // the target's content before, "-" for none
		target   string // the target's name in the directory
		perm     fs.FileMode
		syncErr  error // what every fsync returns
		wantErr  bool
		want     string // the target's content after
		wantMode fs.FileMode
		// wantSyncs is what the syncs saw, dir standing for the directory's path.
		wantSyncs []step
	}{
		{name: "new file", old: "-", target: "r.json", perm: 0o600, want: "new", wantMode: 0o600,
			wantSyncs: []step{{"file", "-"}, {"dir", "new"}}},
		{name: "replace", old: "old", target: "r.json", perm: 0o600, want: "new", wantMode: 0o600,
			wantSyncs: []step{{"file", "old"}, {"dir", "new"}}},
		{name: "mode", old: "-", target: "r.json", perm: 0o640, want: "new", wantMode: 0o640,
			wantSyncs: []step{{"file", "-"}, {"dir", "new"}}},
		{name: "hidden target refused", old: "-", target: ".r.json", perm: 0o600, wantErr: true, want: "-"},
		{name: "file sync fails", old: "old", target: "r.json", perm: 0o600, syncErr: syscall.EIO, wantErr: true, want: "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.target)
			if tc.old != "-" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.syncErr != nil {
				fsync = func(*os.File) error { return tc.syncErr }
				t.Cleanup(func() { fsync = (*os.File).Sync })
			}
			syncs := watch(t, dir, path)
			err := WriteFile(path, []byte("new"), tc.perm)
			if (err != nil) != tc.wantErr {
				t.Fatalf("WriteFile = %v; want an error: %v", err, tc.wantErr)
			}
			if tc.syncErr != nil && !errors.Is(err, tc.syncErr) {
				t.Errorf("WriteFile = %v; want %v", err, tc.syncErr)
			}
			got := "-"
			if data, err := os.ReadFile(path); err == nil {
				got = string(data)
			}
			if got != tc.want {
				t.Errorf("target holds %q; want %q", got, tc.want)
			}
			if tc.wantMode != 0 {
				if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tc.wantMode {
					t.Errorf("target mode = %v, %v; want %v", fi.Mode().Perm(), err, tc.wantMode)
				}
			}
			if tmps := tempFiles(t, dir); len(tmps) != 0 {
				t.Errorf("temporary files left: %v", tmps)
			}
			want := slices.Clone(tc.wantSyncs)
			for i := range want {
				if want[i].synced == "dir" {
					want[i].synced = dir
				}
			}
			if got := syncs(); !slices.Equal(got, want) {
				t.Errorf("syncs = %v; want %v", got, want)
			}
		})
	}
}

func TestWriteFileDirSyncFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.json")
	fsync = func(f *os.File) error {
		if f.Name() == dir {
			return syscall.EIO
		}
		return f.Sync()
	}
	t.Cleanup(func() { fsync = (*os.File).Sync })
	if err := WriteFile(path, []byte("new"), 0o600); !errors.Is(err, syscall.EIO) {
		t.Fatalf("WriteFile = %v; want %v", err, syscall.EIO)
	}
	if tmps := tempFiles(t, dir); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
	}{
		{name: "no directory", path: filepath.Join(dir, "missing", "r.json")},
		{name: "target is a directory", path: dir},
		{name: "no file name", path: dir + "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteFile(tc.path, []byte("new"), 0o600); err == nil {
				t.Fatal("WriteFile succeeded")
			}
			if tmps := tempFiles(t, dir); len(tmps) != 0 {
				t.Errorf("temporary files left: %v", tmps)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setUp     func(t *testing.T, path string)
		noDir     bool
		wantErr   bool
		wantSyncs int // directory syncs, each seeing no target
	}{
		{name: "file", setUp: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantSyncs: 1},
		{name: "no file: the directory is synced all the same", wantSyncs: 1},
		{name: "no directory", noDir: true},
		{name: "a directory that is not empty", setUp: func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.noDir {
				dir = filepath.Join(dir, "missing")
			}
			path := filepath.Join(dir, "r.json")
			if tc.setUp != nil {
				tc.setUp(t, path)
			}
			syncs := watch(t, dir, path)
			if err := Remove(path); (err != nil) != tc.wantErr {
				t.Fatalf("Remove = %v; want an error: %v", err, tc.wantErr)
			}
			want := slices.Repeat([]step{{dir, "-"}}, tc.wantSyncs)
			if got := syncs(); !slices.Equal(got, want) {
				t.Errorf("syncs = %v; want %v", got, want)
			}
		})
	}
}

func TestMkdirAll(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exists string // made before, under the test's directory
		make   string // asked for, under the test's directory
		// wantSynced are the directories synced, under the test's directory ("." for itself).
		wantSynced []string
	}{
		{name: "exists", exists: "a/b", make: "a/b"},
		{name: "one level", exists: "a", make: "a/b", wantSynced: []string{"a"}},
		{name: "two levels", make: "a/b", wantSynced: []string{".", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.exists != "" {
				if err := os.MkdirAll(filepath.Join(root, tc.exists), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			var (
				mu     sync.Mutex
				synced []string
			)
			for _, d := range []string{".", "a", "a/b"} {
				stop := synctrace.Watch(filepath.Join(root, d), func(s synctrace.Sync) {
					rel, err := filepath.Rel(root, s.Path)
					if err != nil || !s.Dir {
						t.Errorf("synced %+v", s)
					}
					mu.Lock()
					synced = append(synced, rel)
					mu.Unlock()
				})
				t.Cleanup(stop)
			}
			dir := filepath.Join(root, tc.make)
			if err := MkdirAll(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				t.Fatalf("%s: %v", dir, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(synced, tc.wantSynced) {
				t.Errorf("synced %v; want %v", synced, tc.wantSynced)
			}
		})
	}
}

func TestMkdirAllNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(file, "d"), 0o700); err == nil {
		t.Fatal("MkdirAll under a file succeeded")
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		"r.json":             false,
		".r.json.tmp-1x2y3z": true,
		".tmp-abc-123":       true, // the sandbox store's temporary files before this package
		".s1.4567":           true, // the record store's
		"r.json.tmp-1x2y3z":  false,
		"a.b":                false,
	} {
		if got := IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v; want %v", name, got, want)
		}
	}
}

// TestWriteFileConcurrent: writers of different files in one directory never see one
// another's temporary files or content.
func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			path := filepath.Join(dir, string(rune('a'+i))+".json")
			for j := range 20 {
				data := bytes.Repeat([]byte{byte('a' + i)}, j+1)
				if err := WriteFile(path, data, 0o600); err != nil {
					t.Error(err)
					return
				}
				if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s = %q, %v; want %q", path, got, err, data)
				}
			}
		})
	}
	wg.Wait()
	if tmps := tempFiles(t, dir); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}
