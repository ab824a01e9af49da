package confwatch

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
)

func TestMain(m *testing.M) { os.Exit(plugintest.Main(m)) }

// countingExec is libcni's real executor, counting the commands it runs.
type countingExec struct {
	invoke.Exec
	mu sync.Mutex
	n  map[string]int
}

func newCountingExec() *countingExec {
	return &countingExec{
		Exec: &invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}},
		n:    map[string]int{},
	}
}

func (c *countingExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	c.mu.Lock()
	c.n[envValue(env, "CNI_COMMAND")]++
	c.mu.Unlock()
	return c.Exec.ExecPlugin(ctx, path, stdin, env)
}

// versions returns how many VERSION execs ran since the last call.
func (c *countingExec) versions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n["VERSION"]
	c.n["VERSION"] = 0
	return n
}

// env is a configuration directory and a plugin bin dir for one test.
type env struct {
	t    testing.TB
	conf string
	bin  string
	exec *countingExec
}

// newEnv makes a conf dir and a bin dir holding the test plugin under each name.
func newEnv(t testing.TB, plugins ...string) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, conf: filepath.Join(root, "net.d"), bin: filepath.Join(root, "bin"), exec: newCountingExec()}
	if err := os.MkdirAll(e.conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(plugins) > 0 {
		plugintest.MustInstallAs(t, e.bin, plugins...)
	}
	return e
}

// watcher returns a Watcher on the env's dirs; extra options come last.
func (e *env) watcher(opts ...Option) *Watcher {
	e.t.Helper()
	w, err := New(e.conf, append([]Option{WithBinDirs(e.bin), WithExec(e.exec)}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// write writes a file under the conf dir (creating parent dirs) in place.
func (e *env) write(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.conf, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// replace writes a file under the conf dir atomically: a temporary file in the same
// directory, renamed into place.
func (e *env) replace(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.conf, name)
	tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) remove(name string) {
	e.t.Helper()
	if err := os.RemoveAll(filepath.Join(e.conf, name)); err != nil {
		e.t.Fatal(err)
	}
}

// install installs the test plugin under names into the bin dir.
func (e *env) install(names ...string) { e.t.Helper(); plugintest.MustInstallAs(e.t, e.bin, names...) }

// behave writes the behavior file beside the installed plugin name.
func (e *env) behave(name string, b plugintest.Behavior) {
	e.t.Helper()
	plugintest.MustWriteBehavior(e.t, plugintest.SidecarPath(filepath.Join(e.bin, name)), b)
}

// conflist returns a .conflist document for network name with plugins of the given types.
func conflist(name, cniVersion string, types ...string) string {
	plugins := make([]map[string]any, len(types))
	for i, t := range types {
		plugins[i] = map[string]any{"type": t}
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": cniVersion, "name": name, "plugins": plugins})
	return string(b)
}

// conf returns a single-plugin .conf document.
func conf(name, cniVersion, typ string) string {
	return fmt.Sprintf(`{"cniVersion":%q,"name":%q,"type":%q}`, cniVersion, name, typ)
}

// base returns the base names of the networks' files.
func netFiles(ns []*Network) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, filepath.Base(n.File))
	}
	return out
}

func defaultFile(s *Snapshot) string {
	if s.Default == nil {
		return ""
	}
	return filepath.Base(s.Default.File)
}

// waitFor waits until a snapshot satisfies ok, failing the test if ctx's deadline passes
// first. It returns the snapshot.
func waitFor(ctx context.Context, t testing.TB, w *Watcher, what string, ok func(*Snapshot) bool) *Snapshot {
	t.Helper()
	var gen uint64
	for {
		s := w.Snapshot()
		if s.Generation > 0 && ok(s) {
			return s
		}
		if s.Generation > gen {
			gen = s.Generation
		}
		if _, err := w.Wait(ctx, gen); err != nil {
			s := w.Snapshot()
			t.Fatalf("waiting for %s: %v; last snapshot: gen %d default %q networks %v skipped %v err %v",
				what, err, s.Generation, defaultFile(s), netFiles(s.Networks), s.Skipped, s.Err)
		}
	}
}
