package confwatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// recorder keeps every snapshot the watcher publishes, from a goroutine that ends with the
// test.
type recorder struct {
	mu    sync.Mutex
	snaps []*Snapshot
	done  chan struct{}
}

func record(t *testing.T, ctx context.Context, w *Watcher) *recorder {
	r := &recorder{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		var gen uint64
		for {
			s, err := w.Wait(ctx, gen)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.snaps = append(r.snaps, s)
			r.mu.Unlock()
			gen = s.Generation
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *recorder) all() []*Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Snapshot(nil), r.snaps...)
}

func deadline(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, asyncDeadline)
	t.Cleanup(cancel)
	return ctx
}

// TestRunOverflow: an event queue overflow rescans at once, without waiting
// for the debounce (set to an hour here) or the resync (off).
func TestRunOverflow(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher(WithDebounce(time.Hour, time.Hour), WithResync(0))
	w.injectErr = make(chan error)
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })

	e.write("10-a.conflist", conflist("a", "0.4.0", "bridge"))
	select {
	case w.injectErr <- fsnotify.ErrEventOverflow:
	case <-dctx.Done():
		t.Fatal("loop did not take the overflow")
	}
	waitFor(dctx, t, w, "rescan after overflow", func(s *Snapshot) bool {
		return s.Default != nil && s.Default.CNIVersion == "0.4.0"
	})
}

// TestRunSurvivesWatcherErrors: watcher errors never end the loop; it backs
// off and keeps reacting to changes.
func TestRunSurvivesWatcherErrors(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher(WithResync(0))
	w.injectErr = make(chan error)
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })

	for i := range 3 {
		select {
		case w.injectErr <- errors.New("inotify read failed"):
		case <-dctx.Done():
			t.Fatalf("loop stopped taking errors after %d", i)
		}
	}
	e.replace("10-a.conflist", conflist("a", "0.4.0", "bridge"))
	waitFor(dctx, t, w, "change after errors", func(s *Snapshot) bool {
		return s.Default != nil && s.Default.CNIVersion == "0.4.0"
	})
}

// TestRunTruncateAndWriteInTwoChunks checks the half-written-file rule end to end: a file rewritten in place in
// two writes with a pause between them never yields a snapshot without it, nor one built from
// the first chunk. The pause is shorter than the quiet window; if the machine stalls past the
// window, the hold rule still keeps the old version for one more window.
func TestRunTruncateAndWriteInTwoChunks(t *testing.T) {
	e := newEnv(t, "bridge")
	oldConf, newConf := conflist("a", "1.0.0", "bridge"), conflist("a", "0.4.0", "bridge")
	e.write("10-a.conflist", oldConf)
	e.write("20-b.conflist", conflist("b", "1.0.0", "bridge"))
	w := e.watcher(WithDebounce(500*time.Millisecond, 2*time.Second), WithResync(0))
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	first := waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })
	rec := record(t, ctx, w)

	f, err := os.OpenFile(filepath.Join(e.conf, "10-a.conflist"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(newConf[:len(newConf)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the writer's pause, not an assertion
	if _, err := f.WriteString(newConf[len(newConf)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	last := waitFor(dctx, t, w, "second chunk", func(s *Snapshot) bool {
		return s.Default != nil && s.Default.CNIVersion == "0.4.0"
	})
	for _, s := range append(rec.all(), last) {
		d := s.Default
		if d == nil || filepath.Base(d.File) != "10-a.conflist" || (d.Digest != first.Default.Digest && d.Digest != last.Default.Digest) {
			t.Errorf("generation %d: default %+v, want 10-a.conflist, old or new", s.Generation, d)
		}
	}
}

// TestRunHoldsThroughAPause checks the hold with a scan landing between the two chunks: the
// scan sees the first chunk, keeps the previous version, and the second chunk replaces it.
func TestRunHoldsThroughAPause(t *testing.T) {
	e := newEnv(t, "bridge")
	oldConf, newConf := conflist("a", "1.0.0", "bridge"), conflist("a", "0.4.0", "bridge")
	e.write("10-a.conflist", oldConf)
	e.write("20-b.conflist", conflist("b", "1.0.0", "bridge"))
	// The quiet window is long so that the hold outlasts the test's own pauses on a busy
	// machine; the first scan of the burst comes at the bound.
	w := e.watcher(WithDebounce(2*time.Second, 2*time.Second), WithResync(0))
	w.scanned = make(chan scanResult, 100)
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	first := waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })
	rec := record(t, ctx, w)
	<-w.scanned

	f, err := os.OpenFile(filepath.Join(e.conf, "10-a.conflist"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(newConf[:len(newConf)/2]); err != nil {
		t.Fatal(err)
	}
	// Wait for the scan that reads the first chunk.
	for held := false; !held; {
		select {
		case res := <-w.scanned:
			held = !res.recheckAt.IsZero()
			if !held {
				t.Fatalf("a scan after the first chunk did not hold the file: default %v skipped %v", res.snap.Default, res.snap.Skipped)
			}
			if d := res.snap.Default; d == nil || d.Digest != first.Default.Digest {
				t.Fatalf("held snapshot's default = %+v, want the previous version", d)
			}
		case <-dctx.Done():
			t.Fatal("no scan after the first chunk")
		}
	}
	if _, err := f.WriteString(newConf[len(newConf)/2:]); err != nil {
		t.Fatal(err)
	}
	last := waitFor(dctx, t, w, "second chunk", func(s *Snapshot) bool {
		return s.Default != nil && s.Default.CNIVersion == "0.4.0"
	})
	for _, s := range append(rec.all(), last) {
		if d := s.Default; d == nil || filepath.Base(d.File) != "10-a.conflist" {
			t.Errorf("generation %d: default %+v, want 10-a.conflist", s.Generation, d)
		}
	}
}

// TestRunReleasesHoldWithoutEvents checks that a held file that stays broken is skipped after
// the quiet window even when nothing else happens: the loop schedules the recheck itself.
func TestRunReleasesHoldWithoutEvents(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	e.write("20-b.conflist", conflist("b", "1.0.0", "bridge"))
	w := e.watcher(WithDebounce(100*time.Millisecond, time.Second), WithResync(0))
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return defaultFile(s) == "10-a.conflist" })
	e.write("10-a.conflist", `{"cniVersion":"1.0.0","name":"a","plu`)
	s := waitFor(dctx, t, w, "hold released", func(s *Snapshot) bool { return defaultFile(s) == "20-b.conflist" })
	if len(s.Skipped) != 1 || filepath.Base(s.Skipped[0].File) != "10-a.conflist" {
		t.Errorf("skipped = %v, want 10-a.conflist", s.Skipped)
	}
}

// TestRunBurstIsBounded checks the debounce's upper bound: a constant stream of events, each
// within the quiet window of the last, cannot hold a rescan back forever.
func TestRunBurstIsBounded(t *testing.T) {
	e := newEnv(t, "bridge")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w := e.watcher(WithDebounce(500*time.Millisecond, time.Second), WithResync(0))
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })

	sctx, stop := context.WithCancel(ctx)
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				_ = os.WriteFile(filepath.Join(e.conf, "99-noise.conf"), []byte("{"), 0o644)
			}
		}
	}()
	defer func() { stop(); <-streamDone }()
	e.replace("10-a.conflist", conflist("a", "0.4.0", "bridge"))
	waitFor(dctx, t, w, "rescan during the stream", func(s *Snapshot) bool {
		return s.Default != nil && s.Default.CNIVersion == "0.4.0"
	})
}

// TestRunResync checks the resync safety net: a change no watch reports (a config symlinked
// to a file outside the watched directories) is picked up by the periodic resync.
func TestRunResync(t *testing.T) {
	e := newEnv(t, "bridge")
	outside := filepath.Join(filepath.Dir(e.conf), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(outside, "a.conflist")
	if err := os.WriteFile(target, []byte(conflist("a", "1.0.0", "bridge")), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, target, filepath.Join(e.conf, "10-a.conflist"))
	w := e.watcher(WithResync(200 * time.Millisecond))
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })
	if err := os.WriteFile(target, []byte(conflist("a", "0.4.0", "bridge")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(dctx, t, w, "resync", func(s *Snapshot) bool { return s.Default != nil && s.Default.CNIVersion == "0.4.0" })
}

// TestRunNoExecWhenNothingChanged: through Run, events that cause rescans but change nothing
// exec no plugin.
func TestRunNoExecWhenNothingChanged(t *testing.T) {
	e := newEnv(t, "bridge", "portmap")
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge", "portmap"))
	w := e.watcher(WithDebounce(20*time.Millisecond, 100*time.Millisecond), WithResync(0))
	ctx := testContext(t)
	startRun(t, ctx, w)
	dctx := deadline(t, ctx)
	waitFor(dctx, t, w, "first scan", func(s *Snapshot) bool { return s.Default != nil })
	if n := e.exec.versions(); n != 2 {
		t.Fatalf("first scan ran %d VERSION execs, want 2", n)
	}
	for range 3 {
		// Same bytes, and a file of another kind: rescans that change nothing.
		e.write("10-a.conflist", conflist("a", "1.0.0", "bridge", "portmap"))
		e.write("20-other.txt", "not a config")
	}
	// A new network using the same binaries, seen after the events above.
	e.write("30-c.conflist", conflist("c", "1.0.0", "bridge", "portmap"))
	s := waitFor(dctx, t, w, "30-c.conflist", func(s *Snapshot) bool { return len(s.Networks) == 2 })
	if n := e.exec.versions(); n != 0 {
		t.Errorf("rescans ran %d VERSION execs, want 0", n)
	}
	if s.Generation != 2 {
		t.Errorf("generation %d, want 2: a rescan that changed nothing published", s.Generation)
	}
}

// TestRunTwice checks that a second concurrent Run is refused and does not disturb the first.
func TestRunTwice(t *testing.T) {
	e := newEnv(t, "bridge")
	w := e.watcher()
	ctx := testContext(t)
	startRun(t, ctx, w)
	waitFor(deadline(t, ctx), t, w, "first scan", func(s *Snapshot) bool { return true })
	if err := w.Run(ctx); !errors.Is(err, errRunning) {
		t.Fatalf("second Run = %v, want errRunning", err)
	}
}

// TestRelevant checks the event filter.
func TestRelevant(t *testing.T) {
	root := t.TempDir()
	conf, bin := filepath.Join(root, "net.d"), filepath.Join(root, "bin")
	w, err := New(conf, WithBinDirs(bin))
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{w: w, subdirs: []string{filepath.Join(conf, "mynet")}}
	C, W, R, N, M := fsnotify.Create, fsnotify.Write, fsnotify.Remove, fsnotify.Rename, fsnotify.Chmod
	tests := []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{"net.d/10-a.conflist", C, true},
		{"net.d/10-a.conf", W, true},
		{"net.d/10-a.json", R, true},
		{"net.d/10-a.conflist", N, true},
		{"net.d/10-a.conflist", M, false},
		{"net.d/10-a.conflist", W | M, true},
		{"net.d/10-a.yaml", W, false},
		{"net.d/10-a.conflist.swp", W, false},
		{"net.d/.10-a.conflist.tmp", C, false},
		{"net.d/..data", C, true},
		{"net.d/..data_tmp", N, true},
		{"net.d/..2024_01_01_00_00_00.123", R, true},
		{"net.d/mynet", C, true},
		{"net.d/othernet", C, false},
		{"net.d/mynet/10-p.conf", W, true},
		{"net.d/mynet/10-p.conflist", W, false},
		{"net.d/mynet/10-p.conf", M, false},
		{"bin/bridge", C, true},
		{"bin/bridge", M, true},
		{"net.d", R, true},
		{"net.d", C, true},
		{"other", C, false},
		{"net.d/sub/10-a.conflist", W, false},
	}
	for _, tc := range tests {
		if got := l.relevant(filepath.Join(root, tc.name), tc.op); got != tc.want {
			t.Errorf("relevant(%s, %v) = %v, want %v", tc.name, tc.op, got, tc.want)
		}
	}
	// With the conf dir missing, its parent's entries on the way to it matter.
	w2, err := New(filepath.Join(root, "etc/cni/net.d"), WithBinDirs(bin))
	if err != nil {
		t.Fatal(err)
	}
	l2 := &loop{w: w2}
	if !l2.relevant(filepath.Join(root, "etc"), C) || !l2.relevant(filepath.Join(root, "etc/cni"), C) || l2.relevant(filepath.Join(root, "var"), C) {
		t.Error("ancestors of a missing conf dir are not handled")
	}
}

// TestLogging: the chosen network at V(2) when it changes, with path, name
// and cniVersion; skipped files at V(2); nothing when nothing changed, nor at V(1).
func TestLogging(t *testing.T) {
	e := newEnv(t, "bridge")
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2), ktesting.BufferLogs(true)))
	buf := logger.GetSink().(ktesting.Underlier).GetBuffer()
	ctx := klog.NewContext(t.Context(), logger)
	w := e.watcher()
	seen := 0
	newEntries := func() ktesting.Log {
		all := buf.Data()
		out := all[seen:]
		seen = len(all)
		return out
	}
	kv := func(en ktesting.LogEntry) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(en.ParameterKVList); i += 2 {
			m[en.ParameterKVList[i].(string)] = en.ParameterKVList[i+1]
		}
		return m
	}

	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	w.Scan(ctx)
	got := newEntries()
	if len(got) != 1 || got[0].Message != "Selected default CNI network" || got[0].Verbosity != 2 || got[0].Type != ktesting.LogInfo {
		t.Fatalf("first scan logged %+v", got)
	}
	if m := kv(got[0]); m["path"] != filepath.Join(e.conf, "10-a.conflist") || m["network"] != "a" || m["cniVersion"] != "1.0.0" {
		t.Errorf("selected network logged with %v", m)
	}

	w.Scan(ctx)
	if got := newEntries(); len(got) != 0 {
		t.Errorf("unchanged rescan logged %+v", got)
	}

	e.write("00-bad.conf", "{")
	w.Scan(ctx)
	got = newEntries()
	if len(got) != 1 || got[0].Message != "Skipping CNI config" || got[0].Verbosity != 2 || kv(got[0])["path"] != filepath.Join(e.conf, "00-bad.conf") {
		t.Fatalf("skipped file logged %+v", got)
	}

	e.write("05-b.conflist", conflist("b", "0.4.0", "bridge"))
	w.Scan(ctx)
	got = newEntries()
	if len(got) != 1 || got[0].Message != "Selected default CNI network" || kv(got[0])["network"] != "b" || kv(got[0])["cniVersion"] != "0.4.0" {
		t.Fatalf("new default logged %+v", got)
	}

	e.remove("05-b.conflist")
	e.remove("10-a.conflist")
	w.Scan(ctx)
	got = newEntries()
	if len(got) != 1 || got[0].Message != "No default CNI network" || got[0].Verbosity != 2 {
		t.Fatalf("lost default logged %+v", got)
	}

	// Below V(2) a change logs nothing: a command's output stays its own.
	quiet := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(1), ktesting.BufferLogs(true)))
	e.write("10-a.conflist", conflist("a", "1.0.0", "bridge"))
	e.watcher().Scan(klog.NewContext(t.Context(), quiet))
	if got := quiet.GetSink().(ktesting.Underlier).GetBuffer().Data(); len(got) != 0 {
		t.Errorf("at V(1), a scan logged %+v", got)
	}
}
