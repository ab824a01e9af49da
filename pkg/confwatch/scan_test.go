package confwatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
)

// TestScan checks loading, validation and selection on one
// synchronous scan of a directory.
func TestScan(t *testing.T) {
	const v = "1.0.0"
	tests := []struct {
		name    string
		plugins []string                       // installed binaries
		setup   func(e *env)                   // files
		opts    []Option                       // extra options
		behave  map[string]plugintest.Behavior // per-binary behavior
		def     string                         // default file, "" for none
		nets    []string                       // valid network files, in order
		skipped map[string]string              // skipped file -> reason substring
		err     string                         // Err substring ("DIR" is the conf dir), "" for nil
		pinned  bool                           // Err wraps errPinnedNotFound
		check   func(t *testing.T, s *Snapshot)
	}{{
		name:  "empty dir",
		setup: func(e *env) {},
		err:   "no valid CNI network config in DIR: no .conf, .conflist or .json files",
	}, {
		name:  "missing dir",
		setup: func(e *env) { e.remove("") },
		err:   "no valid CNI network config in DIR: directory does not exist",
	}, {
		name:    "other extensions and directories are ignored",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist.bak", conflist("a", v, "bridge"))
			e.write("README", "hello")
			e.write("20-dir.conf/x.conf", conf("x", v, "bridge"))
			if err := os.Symlink(filepath.Join(e.conf, "20-dir.conf"), filepath.Join(e.conf, "30-link.conflist")); err != nil {
				t.Fatal(err)
			}
		},
		err: "no .conf, .conflist or .json files",
	}, {
		name:    "lexical order over all three extensions",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("20-b.conflist", conflist("b", v, "bridge"))
			e.write("10-a.json", conf("a", v, "bridge"))
			e.write("15-c.conf", conf("c", v, "bridge"))
		},
		def:  "10-a.json",
		nets: []string{"10-a.json", "15-c.conf", "20-b.conflist"},
		check: func(t *testing.T, s *Snapshot) {
			n := s.Default
			if n.Name != "a" || n.CNIVersion != v || !slices.Equal(n.PluginTypes, []string{"bridge"}) || len(n.Config.Plugins) != 1 {
				t.Errorf("default = %+v", n)
			}
		},
	}, {
		name:    "invalid JSON sorted first is skipped, never blanks the selection",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("00-bad.conflist", `{"cniVersion": "1.0.0", "name": "bad", "plugins": [`)
			e.write("10-good.conflist", conflist("good", v, "bridge"))
		},
		def:     "10-good.conflist",
		nets:    []string{"10-good.conflist"},
		skipped: map[string]string{"00-bad.conflist": "unexpected end of JSON input"},
	}, {
		name:    "plugin binary missing: readiness error names file, plugin and bin dir",
		plugins: []string{"bridge"},
		setup:   func(e *env) { e.write("10-flannel.conflist", conflist("cbr0", v, "flannel")) },
		skipped: map[string]string{"10-flannel.conflist": `plugin "flannel" not found in [BIN]`},
		err:     `no valid CNI network config in DIR: 10-flannel.conflist: plugin "flannel" not found in [BIN]`,
	}, {
		name:    "plugin type with a path is refused",
		plugins: []string{"bridge"},
		setup:   func(e *env) { e.write("10-a.conflist", conflist("a", v, "../bin/bridge")) },
		skipped: map[string]string{"10-a.conflist": `plugin type "../bin/bridge" is not a bare binary name`},
		err:     "no valid CNI network config",
	}, {
		name:    "plugin does not support the cniVersion",
		plugins: []string{"bridge", "old"},
		behave:  map[string]plugintest.Behavior{"old": {Versions: []string{"0.3.1", "0.4.0"}}},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("a", v, "bridge", "old"))
			e.write("20-b.conflist", conflist("b", "0.4.0", "bridge", "old"))
		},
		def:     "20-b.conflist",
		nets:    []string{"20-b.conflist"},
		skipped: map[string]string{"10-a.conflist": `plugin old does not support config version "1.0.0"`},
	}, {
		name:    "plugin VERSION fails",
		plugins: []string{"bridge", "broken"},
		behave:  map[string]plugintest.Behavior{"broken": {Commands: map[string]plugintest.Action{"VERSION": {Do: "garbage"}}}},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("a", v, "broken"))
			e.write("20-b.conflist", conflist("b", v, "bridge"))
		},
		def:     "20-b.conflist",
		nets:    []string{"20-b.conflist"},
		skipped: map[string]string{"10-a.conflist": `plugins of network "a"`},
	}, {
		name:    "empty plugin list",
		plugins: []string{"bridge"},
		setup:   func(e *env) { e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[]}`) },
		skipped: map[string]string{"10-a.conflist": "no plugins in list"},
		err:     "10-a.conflist: ",
	}, {
		name:    "conflist without plugins and without subdirectory",
		plugins: []string{"bridge"},
		setup:   func(e *env) { e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a"}`) },
		skipped: map[string]string{"10-a.conflist": "no plugins: no \"plugins\" in the list and no .conf files in DIR/a"},
		err:     "10-a.conflist: ",
	}, {
		name:    "plugin list saved as .conf is skipped, as the kubelet does",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-list.conf", conflist("a", v, "bridge"))
			e.write("20-b.conf", conf("b", v, "bridge"))
		},
		def:     "20-b.conf",
		nets:    []string{"20-b.conf"},
		skipped: map[string]string{"10-list.conf": "plugin list in a .conf file"},
	}, {
		name:    "plugin configs in the network's subdirectory",
		plugins: []string{"bridge", "portmap", "tuning"},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("a", v, "bridge"))
			e.write("a/20-tuning.conf", `{"type":"tuning"}`)
			e.write("a/10-portmap.conf", `{"type":"portmap","capabilities":{"portMappings":true}}`)
			e.write("a/30-ignored.json", `{"type":"nope"}`)
		},
		def:  "10-a.conflist",
		nets: []string{"10-a.conflist"},
		check: func(t *testing.T, s *Snapshot) {
			if got, want := s.Default.PluginTypes, []string{"bridge", "portmap", "tuning"}; !slices.Equal(got, want) {
				t.Errorf("plugin types = %v, want %v", got, want)
			}
			if !slices.Contains(s.Default.Capabilities, "portMappings") {
				t.Errorf("capabilities = %v, want portMappings", s.Default.Capabilities)
			}
		},
	}, {
		name:    "subdirectory only, no inline plugins",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a"}`)
			e.write("a/10-bridge.conf", `{"type":"bridge"}`)
		},
		def:  "10-a.conflist",
		nets: []string{"10-a.conflist"},
	}, {
		name:    "broken plugin config in the subdirectory",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("a", v, "bridge"))
			e.write("a/10-bridge.conf", `{"type":`)
		},
		skipped: map[string]string{"10-a.conflist": "plugin config DIR/a/10-bridge.conf"},
		err:     "no valid CNI network config",
	}, {
		name:    "loadOnlyInlinedPlugins ignores the subdirectory",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","loadOnlyInlinedPlugins":true,"plugins":[{"type":"bridge"}]}`)
			e.write("a/10-missing.conf", `{"type":"missing"}`)
		},
		def:  "10-a.conflist",
		nets: []string{"10-a.conflist"},
		check: func(t *testing.T, s *Snapshot) {
			if got := s.Default.PluginTypes; !slices.Equal(got, []string{"bridge"}) {
				t.Errorf("plugin types = %v", got)
			}
		},
	}, {
		name:    "capabilities: only those set true, sorted, from all plugins",
		plugins: []string{"bridge", "portmap", "bandwidth"},
		setup: func(e *env) {
			e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},
				{"type":"portmap","capabilities":{"portMappings":true,"ips":false}},
				{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`)
		},
		def:  "10-a.conflist",
		nets: []string{"10-a.conflist"},
		check: func(t *testing.T, s *Snapshot) {
			if got, want := s.Default.Capabilities, []string{"bandwidth", "portMappings"}; !slices.Equal(got, want) {
				t.Errorf("capabilities = %v, want %v", got, want)
			}
			if slices.Contains(s.Default.Capabilities, "ips") {
				t.Error("capability ips listed though set false")
			}
		},
	}, {
		name:    "duplicate network name: first file wins",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("same", v, "bridge"))
			e.write("20-b.conflist", conflist("same", v, "bridge"))
			e.write("30-c.conflist", conflist("other", v, "bridge"))
		},
		def:     "10-a.conflist",
		nets:    []string{"10-a.conflist", "30-c.conflist"},
		skipped: map[string]string{"20-b.conflist": `duplicate network name "same": 10-a.conflist defines it first`},
	}, {
		name:    "duplicate name of an invalid file does not count",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("10-a.conflist", conflist("same", v, "missing"))
			e.write("20-b.conflist", conflist("same", v, "bridge"))
		},
		def:     "20-b.conflist",
		nets:    []string{"20-b.conflist"},
		skipped: map[string]string{"10-a.conflist": `plugin "missing" not found`},
	}, {
		name:    "pinned name selects a later file",
		plugins: []string{"bridge"},
		opts:    []Option{WithNetworkName("two")},
		setup: func(e *env) {
			e.write("10-one.conflist", conflist("one", v, "bridge"))
			e.write("20-two.conflist", conflist("two", v, "bridge"))
		},
		def:  "20-two.conflist",
		nets: []string{"10-one.conflist", "20-two.conflist"},
	}, {
		name:    "pinned name absent",
		plugins: []string{"bridge"},
		opts:    []Option{WithNetworkName("two")},
		setup: func(e *env) {
			e.write("10-one.conflist", conflist("one", v, "bridge"))
			e.write("20-two.conflist", conflist("two", v, "missing"))
		},
		nets:    []string{"10-one.conflist"},
		skipped: map[string]string{"20-two.conflist": `plugin "missing" not found`},
		err:     `no valid CNI network config named "two" in DIR: 20-two.conflist: plugin "missing" not found in [BIN]; valid networks are "one"`,
		pinned:  true,
	}, {
		name:    "file over the size limit",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			big := `{"cniVersion":"1.0.0","name":"big","type":"bridge","pad":"` + strings.Repeat("x", maxConfigSize) + `"}`
			e.write("10-big.conf", big)
			e.write("20-b.conf", conf("b", v, "bridge"))
		},
		def:     "20-b.conf",
		nets:    []string{"20-b.conf"},
		skipped: map[string]string{"10-big.conf": "larger than the 1048576-byte limit"},
	}, {
		name:    "symlink loop",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			if err := os.Symlink("20-y.conflist", filepath.Join(e.conf, "10-x.conflist")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("10-x.conflist", filepath.Join(e.conf, "20-y.conflist")); err != nil {
				t.Fatal(err)
			}
		},
		skipped: map[string]string{"10-x.conflist": "symlink loop", "20-y.conflist": "symlink loop"},
		err:     "10-x.conflist: symlink loop",
	}, {
		name:    "FIFO with a config extension does not block the scan",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			if err := syscall.Mkfifo(filepath.Join(e.conf, "10-fifo.conf"), 0o644); err != nil {
				t.Fatal(err)
			}
			e.write("20-b.conf", conf("b", v, "bridge"))
		},
		def:     "20-b.conf",
		nets:    []string{"20-b.conf"},
		skipped: map[string]string{"10-fifo.conf": "not a regular file"},
	}, {
		name:    "ConfigMap-style mount: files are symlinks through ..data",
		plugins: []string{"bridge"},
		setup: func(e *env) {
			e.write("..2024_01_01_00_00_00.1/10-a.conflist", conflist("a", v, "bridge"))
			mustSymlink(t, "..2024_01_01_00_00_00.1", filepath.Join(e.conf, "..data"))
			mustSymlink(t, "..data/10-a.conflist", filepath.Join(e.conf, "10-a.conflist"))
		},
		def:  "10-a.conflist",
		nets: []string{"10-a.conflist"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.plugins...)
			for name, b := range tc.behave {
				e.behave(name, b)
			}
			tc.setup(e)
			w := e.watcher(tc.opts...)
			s := w.Scan(testContext(t))
			fix := func(s string) string {
				return strings.ReplaceAll(strings.ReplaceAll(s, "DIR", e.conf), "BIN", e.bin)
			}

			if s.Generation != 1 {
				t.Errorf("generation = %d, want 1", s.Generation)
			}
			if s.Dir != e.conf {
				t.Errorf("Dir = %q, want %q", s.Dir, e.conf)
			}
			if got := defaultFile(s); got != tc.def {
				t.Errorf("default = %q, want %q", got, tc.def)
			}
			if got, want := netFiles(s.Networks), append([]string{}, tc.nets...); !slices.Equal(got, want) {
				t.Errorf("networks = %v, want %v", got, want)
			}
			gotSkipped := map[string]string{}
			for _, sk := range s.Skipped {
				gotSkipped[filepath.Base(sk.File)] = sk.Reason.Error()
			}
			if len(gotSkipped) != len(tc.skipped) {
				t.Errorf("skipped = %v, want %v", gotSkipped, tc.skipped)
			}
			for f, want := range tc.skipped {
				if got, ok := gotSkipped[f]; !ok || !strings.Contains(got, fix(want)) {
					t.Errorf("skipped[%s] = %q, want it to contain %q", f, got, fix(want))
				}
			}
			switch {
			case tc.err == "" && s.Err != nil:
				t.Errorf("Err = %v, want nil", s.Err)
			case tc.err != "" && (s.Err == nil || !strings.Contains(s.Err.Error(), fix(tc.err))):
				t.Errorf("Err = %v, want it to contain %q", s.Err, fix(tc.err))
			case tc.err != "" && !errors.Is(s.Err, ErrNotReady):
				t.Errorf("Err = %v does not wrap ErrNotReady", s.Err)
			}
			if got := errors.Is(s.Err, errPinnedNotFound); got != tc.pinned {
				t.Errorf("errors.Is(Err, errPinnedNotFound) = %v, want %v", got, tc.pinned)
			}
			if (s.Default == nil) != (s.Err != nil) {
				t.Errorf("Default %v and Err %v disagree", s.Default, s.Err)
			}
			for _, n := range s.Networks {
				if s.Network(n.Name) != n {
					t.Errorf("Network(%q) does not return %s", n.Name, n.File)
				}
				if !strings.HasPrefix(n.Digest, "sha256:") || n.Config == nil || n.Config.Name != n.Name {
					t.Errorf("network %s: digest %q config %v", n.File, n.Digest, n.Config)
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func mustSymlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestScanReadinessExact pins the readiness message an operator reads.
func TestScanReadinessExact(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-flannel.conflist", conflist("cbr0", "1.0.0", "flannel"))
	s := e.watcher().Scan(testContext(t))
	want := `no valid CNI network config in ` + e.conf + `: 10-flannel.conflist: plugin "flannel" not found in [` + e.bin + `]`
	if s.Err == nil || s.Err.Error() != want {
		t.Fatalf("Err = %v\nwant  %s", s.Err, want)
	}
}

// TestDigest checks that the digest follows the bytes of the file and of its plugin
// subdirectory, and nothing else.
func TestDigest(t *testing.T) {
	e := newEnv(t, "bridge", "portmap")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher()
	d1 := w.Scan(testContext(t)).Default.Digest

	e.write("a/10-portmap.conf", `{"type":"portmap"}`)
	s2 := w.Scan(testContext(t))
	if s2.Default.Digest == d1 {
		t.Error("digest unchanged after adding a plugin config to the subdirectory")
	}
	e.remove("a")
	if d := w.Scan(testContext(t)).Default.Digest; d != d1 {
		t.Errorf("digest %s after removing the subdirectory, want the original %s", d, d1)
	}
	e.write("20-b.conflist", conflist("a", "1.0.0", "bridge"))
	if d := w.Scan(testContext(t)).Default.Digest; d != d1 {
		t.Error("digest changed by an unrelated file")
	}
}

// TestGeneration checks that the generation moves only when the published content changes
// and that Snapshot is never nil.
func TestGeneration(t *testing.T) {
	e := newEnv(t, "bridge")
	w := e.watcher()
	s0 := w.Snapshot()
	if s0 == nil || s0.Generation != 0 || !errors.Is(s0.Err, ErrNotReady) || s0.Default != nil {
		t.Fatalf("snapshot before the first scan = %+v", s0)
	}
	steps := []struct {
		name string
		do   func()
		gen  uint64
	}{
		{"first scan", func() {}, 1},
		{"unchanged", func() {}, 1},
		{"add a config", func() { e.write("10-a.conflist", conflist("a", "1.0.0", "bridge")) }, 2},
		{"rewrite with the same bytes", func() { e.write("10-a.conflist", conflist("a", "1.0.0", "bridge")) }, 2},
		{"unrelated file", func() { e.write("notes.txt", "x") }, 2},
		{"change it", func() { e.write("10-a.conflist", conflist("a", "0.4.0", "bridge")) }, 3},
		{"add a broken file", func() { e.write("00-bad.conf", "{") }, 4},
		{"unchanged again", func() {}, 4},
	}
	for _, st := range steps {
		st.do()
		s := w.Scan(testContext(t))
		if s.Generation != st.gen {
			t.Errorf("%s: generation %d, want %d", st.name, s.Generation, st.gen)
		}
		if w.Snapshot() != s {
			t.Errorf("%s: Snapshot() is not the snapshot Scan returned", st.name)
		}
	}
}

// TestValidationCache: a rescan with nothing changed execs no plugin; a changed
// binary is asked again; each binary's VERSION runs once however many networks use it.
func TestValidationCache(t *testing.T) {
	e := newEnv(t, "bridge", "portmap")
	for i, n := range []string{"10-a", "20-b", "30-c"} {
		e.write(n+".conflist", conflist(n, "1.0.0", "bridge", "portmap"))
		_ = i
	}
	e.write("40-d.conf", conf("d", "1.0.0", "bridge"))
	w := e.watcher()
	steps := []struct {
		name     string
		do       func()
		versions int
	}{
		{"cold scan: one VERSION per binary", func() {}, 2},
		{"unchanged rescan", func() {}, 0},
		{"unchanged rescan again", func() {}, 0},
		{"config edited", func() { e.write("20-b.conflist", conflist("b2", "1.0.0", "bridge", "portmap")) }, 0},
		{"binary replaced", func() { e.install("portmap") }, 1},
		{"binary touched", func() {
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(e.bin, "bridge"), future, future); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"unchanged after all that", func() {}, 0},
	}
	for _, st := range steps {
		st.do()
		s := w.Scan(testContext(t))
		if got := e.exec.versions(); got != st.versions {
			t.Errorf("%s: %d VERSION execs, want %d", st.name, got, st.versions)
		}
		if s.Default == nil {
			t.Fatalf("%s: not ready: %v", st.name, s.Err)
		}
	}
}

// TestValidationFailureRetriedOnResync checks that a cached validation failure is retried by
// a full (resync) scan but not by an ordinary one.
func TestValidationFailureRetriedOnResync(t *testing.T) {
	e := newEnv(t, "bridge")
	e.behave("bridge", plugintest.Behavior{Commands: map[string]plugintest.Action{"VERSION": {Do: "exit"}}})
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher()
	if s := w.Scan(testContext(t)); s.Default != nil || e.exec.versions() != 1 {
		t.Fatalf("first scan: default %v", s.Default)
	}
	// The plugin recovers without its binary changing.
	e.behave("bridge", plugintest.Behavior{})
	if s := w.Scan(testContext(t)); s.Default != nil || e.exec.versions() != 0 {
		t.Fatalf("ordinary rescan revalidated a cached failure")
	}
	if res := w.scan(testContext(t), true); res.snap.Default == nil || e.exec.versions() != 1 {
		t.Fatalf("full rescan: default %v err %v", res.snap.Default, res.snap.Err)
	}
}

// TestScanCancelled checks that a scan whose context ends publishes nothing.
func TestScanCancelled(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s := w.Scan(ctx); s.Generation != 0 {
		t.Fatalf("cancelled scan published generation %d", s.Generation)
	}
	if s := w.Scan(testContext(t)); s.Generation != 1 || s.Default == nil {
		t.Fatalf("scan after a cancelled one: gen %d err %v", s.Generation, s.Err)
	}
}

// TestHoldHalfWritten checks the half-written-file rule with a fake clock: a file that was valid and stops
// parsing keeps its previous version published for one quiet window; a file completed in
// time replaces it; a file still broken after the window is skipped.
func TestHoldHalfWritten(t *testing.T) {
	const quiet = time.Second
	full := conflist("a", "1.0.0", "bridge")
	next := conflist("a", "0.4.0", "bridge")
	type step struct {
		name    string
		advance time.Duration
		content string // written to 10-a.conflist; "" means remove it
		def     string // default file
		version string // default's cniVersion
	}
	tests := []struct {
		name  string
		steps []step
	}{{
		name: "completed within the window",
		steps: []step{
			{"valid", 0, full, "10-a.conflist", "1.0.0"},
			{"first chunk", 0, next[:20], "10-a.conflist", "1.0.0"},
			{"still first chunk, before the window ends", quiet / 2, next[:20], "10-a.conflist", "1.0.0"},
			{"second chunk", quiet / 4, next, "10-a.conflist", "0.4.0"},
		},
	}, {
		name: "stays broken for a window",
		steps: []step{
			{"valid", 0, full, "10-a.conflist", "1.0.0"},
			{"broken", 0, next[:20], "10-a.conflist", "1.0.0"},
			{"broken a window later", quiet, next[:20], "20-b.conflist", "1.0.0"},
			{"never held again while broken", 0, next[:30], "20-b.conflist", "1.0.0"},
			{"fixed", 0, next, "10-a.conflist", "0.4.0"},
		},
	}, {
		name: "changing broken bytes extend the hold, up to the bound",
		steps: []step{
			{"valid", 0, full, "10-a.conflist", "1.0.0"},
			{"chunk 1", 0, next[:10], "10-a.conflist", "1.0.0"},
			{"chunk 2", quiet * 3 / 4, next[:20], "10-a.conflist", "1.0.0"},
			{"chunk 3", quiet * 3 / 4, next[:30], "10-a.conflist", "1.0.0"},
			{"chunk 4 past the bound", quiet * 3 / 4, next[:40], "20-b.conflist", "1.0.0"},
		},
	}, {
		name: "removal is not held",
		steps: []step{
			{"valid", 0, full, "10-a.conflist", "1.0.0"},
			{"removed", 0, "", "20-b.conflist", "1.0.0"},
		},
	}, {
		name: "a file that never loaded is not held",
		steps: []step{
			{"broken from the start", 0, next[:20], "20-b.conflist", "1.0.0"},
			{"completed", 0, next, "10-a.conflist", "0.4.0"},
		},
	}, {
		name: "validation failure is not held",
		steps: []step{
			{"valid", 0, full, "10-a.conflist", "1.0.0"},
			{"missing plugin", 0, conflist("a", "1.0.0", "missing"), "20-b.conflist", "1.0.0"},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "bridge")
			e.write("20-b.conflist", conflist("b", "1.0.0", "bridge"))
			w := e.watcher(WithDebounce(quiet, 2*quiet))
			clock := time.Unix(1_000_000, 0)
			w.now = func() time.Time { return clock }
			for _, st := range tc.steps {
				clock = clock.Add(st.advance)
				if st.content == "" {
					e.remove("10-a.conflist")
				} else {
					e.write("10-a.conflist", st.content)
				}
				s := w.Scan(testContext(t))
				if got := defaultFile(s); got != st.def || s.Default.CNIVersion != st.version {
					t.Fatalf("%s: default %s (%s), want %s (%s); skipped %v", st.name, got, s.Default.CNIVersion, st.def, st.version, s.Skipped)
				}
				for _, n := range s.Networks {
					if n.File == filepath.Join(e.conf, "10-a.conflist") && n.Config == nil {
						t.Fatalf("%s: network without config", st.name)
					}
				}
			}
		})
	}
}

// TestNewOptions checks New's argument checks and that option order does not matter.
func TestNewOptions(t *testing.T) {
	bad := []struct {
		name string
		dir  string
		opts []Option
	}{
		{"empty dir", "", nil},
		{"no bin dirs", "/x", []Option{WithBinDirs()}},
		{"empty bin dir", "/x", []Option{WithBinDirs("")}},
		{"zero debounce", "/x", []Option{WithDebounce(0, time.Second)}},
		{"bound below quiet", "/x", []Option{WithDebounce(time.Second, time.Millisecond)}},
	}
	for _, tc := range bad {
		if _, err := New(tc.dir, tc.opts...); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	a, err := New("/x", WithBinDirs("/b"), WithDebounce(time.Second, 0), WithNetworkName("n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New("/x", WithNetworkName("n"), WithDebounce(time.Second, 0), WithBinDirs("/b"))
	if err != nil {
		t.Fatal(err)
	}
	if a.opts.maxDebounce != b.opts.maxDebounce || a.opts.maxDebounce != defaultMaxDebounce ||
		!slices.Equal(a.opts.binDirs, b.opts.binDirs) || a.opts.networkName != b.opts.networkName {
		t.Errorf("options differ by order: %+v vs %+v", a.opts, b.opts)
	}
	d, err := New("/x")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.opts.binDirs, []string{DefaultBinDir}) || d.opts.debounce != defaultDebounce || d.opts.resync != defaultResync {
		t.Errorf("defaults = %+v", d.opts)
	}
}

// TestWait checks Wait's contract.
func TestWait(t *testing.T) {
	e := newEnv(t, "bridge")
	w := e.watcher()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Wait(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context = %v", err)
	}
	done := make(chan *Snapshot)
	go func() {
		s, _ := w.Wait(t.Context(), 0)
		done <- s
	}()
	s := w.Scan(testContext(t))
	if got := <-done; got != s {
		t.Fatalf("Wait returned %+v, want the first snapshot", got)
	}
	if got, err := w.Wait(t.Context(), 0); err != nil || got != s {
		t.Fatalf("Wait after publish = %v, %v", got, err)
	}
}
