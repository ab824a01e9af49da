package confwatch

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
)

// asyncDeadline bounds every wait for the watcher; generous, as the machine is noisy. It is a
// failure bound, not a timed assertion.
const asyncDeadline = 30 * time.Second

// testContext returns a context that logs through t and ends with the test.
func testContext(t testing.TB) context.Context {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(4)))
	return klog.NewContext(t.Context(), logger)
}

// startRun runs w.Run in a goroutine until the test ends, and checks it returns ctx's error.
func startRun(t testing.TB, ctx context.Context, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// TestScripts runs the watcher scenarios in testdata/*.txt. Each script is a sequence of
// file operations, starting Run, and expected states. The format:
//
//	# comment
//	option pin NAME | option debounce QUIET MAX | option resync D | option confdir REL
//	run                              start Run (operations before it are the initial state)
//	mkdir P | rmdir P | rm P | rename A B | symlink TARGET LINK | chmod P OCTAL
//	write P CONTENT                  write in place (truncate, write)
//	replace P CONTENT                write a temporary file and rename it over P
//	install NAME... | uninstall NAME plugin binaries in bin/
//	expect default FILE NAME [VERSION]
//	expect none SUBSTRING...         not ready, Err contains the text
//	expect pinned-missing            Err wraps errPinnedNotFound
//	expect networks FILE...          the valid networks, in order
//	expect skipped FILE SUBSTRING... FILE is skipped with a reason containing the text
//
// Paths are relative to the test's root, which holds net.d/ and bin/ (with a plugin named
// "bridge"). CONTENT is "conflist NAME VERSION TYPE...", "conf NAME VERSION TYPE",
// "plugin TYPE" (a subdirectory plugin config) or "raw TEXT...". An expect after an operation
// waits for a newer snapshot than the previous expect matched, so each step must change
// something; consecutive expects check the same snapshot.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	confRel := "net.d"
	bin := filepath.Join(root, "bin")
	plugintest.MustInstallAs(t, bin, "bridge")
	if err := os.MkdirAll(filepath.Join(root, confRel), 0o755); err != nil {
		t.Fatal(err)
	}
	var opts []Option
	var w *Watcher
	ctx := testContext(t)
	var (
		lastGen  uint64
		changed  = true
		lastSnap *Snapshot
	)
	path := func(p string) string { return filepath.Join(root, p) }
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%s:%d: %s: "+format, append([]any{filepath.Base(file), n, line}, args...)...)
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				fail("%v", err)
			}
		}
		op, args := f[0], f[1:]
		if op != "expect" && op != "option" && op != "run" {
			changed = true
		}
		switch op {
		case "option":
			if w != nil {
				fail("option after run")
			}
			switch args[0] {
			case "pin":
				opts = append(opts, WithNetworkName(args[1]))
			case "debounce":
				q, err1 := time.ParseDuration(args[1])
				m, err2 := time.ParseDuration(args[2])
				must(errors.Join(err1, err2))
				opts = append(opts, WithDebounce(q, m))
			case "resync":
				d, err := time.ParseDuration(args[1])
				must(err)
				opts = append(opts, WithResync(d))
			case "confdir":
				must(os.RemoveAll(path(confRel)))
				confRel = args[1]
				must(os.MkdirAll(path(confRel), 0o755))
			default:
				fail("unknown option")
			}
		case "run":
			w, err = New(path(confRel), append([]Option{WithBinDirs(bin)}, opts...)...)
			must(err)
			startRun(t, ctx, w)
		case "mkdir":
			must(os.MkdirAll(path(args[0]), 0o755))
		case "rmdir":
			must(os.RemoveAll(path(args[0])))
		case "rm":
			must(os.Remove(path(args[0])))
		case "rename":
			must(os.Rename(path(args[0]), path(args[1])))
		case "symlink":
			must(os.Symlink(args[0], path(args[1])))
		case "chmod":
			m, err := strconv.ParseUint(args[1], 8, 32)
			must(err)
			must(os.Chmod(path(args[0]), os.FileMode(m)))
		case "write", "replace":
			content := scriptContent(args[1:])
			if content == "" {
				fail("bad content")
			}
			p := path(args[0])
			if op == "write" {
				must(os.WriteFile(p, []byte(content), 0o644))
				break
			}
			tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
			must(os.WriteFile(tmp, []byte(content), 0o644))
			must(os.Rename(tmp, p))
		case "install":
			_, err := plugintest.InstallAs(bin, args...)
			must(err)
		case "uninstall":
			must(os.Remove(filepath.Join(bin, args[0])))
		case "expect":
			if w == nil {
				fail("expect before run")
			}
			check := scriptExpect(args, path(confRel), bin)
			if check == nil {
				fail("bad expect")
			}
			if !changed && lastSnap != nil {
				if msg := check(lastSnap); msg != "" {
					fail("%s", msg)
				}
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, asyncDeadline)
			var why string
			s := waitForMsg(wctx, w, lastGen, func(s *Snapshot) string { why = check(s); return why })
			cancel()
			if s == nil {
				cur := w.Snapshot()
				fail("not met within %v: %s (last snapshot: gen %d default %q networks %v skipped %v err %v)",
					asyncDeadline, why, cur.Generation, defaultFile(cur), netFiles(cur.Networks), cur.Skipped, cur.Err)
			}
			lastGen, lastSnap, changed = s.Generation, s, false
		default:
			fail("unknown command")
		}
	}
	if w == nil {
		t.Fatalf("%s: never ran", file)
	}
}

// waitForMsg waits for a snapshot newer than after for which check returns "", or for ctx to
// end (nil).
func waitForMsg(ctx context.Context, w *Watcher, after uint64, check func(*Snapshot) string) *Snapshot {
	for {
		s, err := w.Wait(ctx, after)
		if err != nil {
			return nil
		}
		if check(s) == "" {
			return s
		}
		after = s.Generation
	}
}

func scriptContent(f []string) string {
	if len(f) == 0 {
		return ""
	}
	switch f[0] {
	case "conflist":
		if len(f) < 4 {
			return ""
		}
		return conflist(f[1], f[2], f[3:]...)
	case "conf":
		if len(f) != 4 {
			return ""
		}
		return conf(f[1], f[2], f[3])
	case "plugin":
		if len(f) != 2 {
			return ""
		}
		return `{"type":"` + f[1] + `"}`
	case "raw":
		return strings.Join(f[1:], " ")
	}
	return ""
}

// scriptExpect returns a check for an expect line: "" when the snapshot matches, else why
// not; nil if the line is malformed.
func scriptExpect(args []string, conf, bin string) func(*Snapshot) string {
	if len(args) == 0 {
		return nil
	}
	fix := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "DIR", conf), "BIN", bin)
	}
	switch args[0] {
	case "default":
		if len(args) < 3 {
			return nil
		}
		return func(s *Snapshot) string {
			d := s.Default
			switch {
			case d == nil:
				return "no default: " + errString(s.Err)
			case filepath.Base(d.File) != args[1] || d.Name != args[2]:
				return "default is " + filepath.Base(d.File) + " " + d.Name
			case len(args) > 3 && d.CNIVersion != args[3]:
				return "default cniVersion is " + d.CNIVersion
			}
			return ""
		}
	case "none":
		want := fix(strings.Join(args[1:], " "))
		return func(s *Snapshot) string {
			switch {
			case s.Default != nil:
				return "default is " + s.Default.File
			case !errors.Is(s.Err, ErrNotReady):
				return "Err does not wrap ErrNotReady: " + errString(s.Err)
			case !strings.Contains(s.Err.Error(), want):
				return "Err is " + s.Err.Error()
			}
			return ""
		}
	case "pinned-missing":
		return func(s *Snapshot) string {
			if !errors.Is(s.Err, errPinnedNotFound) {
				return "Err does not wrap errPinnedNotFound: " + errString(s.Err)
			}
			return ""
		}
	case "networks":
		want := args[1:]
		return func(s *Snapshot) string {
			if got := netFiles(s.Networks); !slices.Equal(got, want) {
				return "networks are " + strings.Join(got, " ")
			}
			return ""
		}
	case "skipped":
		if len(args) < 3 {
			return nil
		}
		want := fix(strings.Join(args[2:], " "))
		return func(s *Snapshot) string {
			for _, sk := range s.Skipped {
				if filepath.Base(sk.File) == args[1] {
					if strings.Contains(sk.Reason.Error(), want) {
						return ""
					}
					return args[1] + " skipped for " + sk.Reason.Error()
				}
			}
			return args[1] + " not skipped"
		}
	}
	return nil
}
