package cninetwork

import (
	"context"
	"path/filepath"
	"sync"

	"github.com/cnishim/cnishim/internal/pluginenv"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// pluginExec is the invoke.Exec every plugin of the Plugin runs through. It trims the
// environment a plugin receives to the CNI variables and PATH (unless passEnv), and records in
// the operation's execTrace which plugin runs, so that an error or a timeout can name it.
//
// It does not wrap the errors of the executor it calls: libcni already names the plugin in the
// errors of ADD and DEL, and its VERSION probe compares the plugin's error text.
type pluginExec struct {
	inner   invoke.Exec
	passEnv bool
}

var _ invoke.Exec = (*pluginExec)(nil)

// newDefaultExec returns libcni's executor of plugin binaries. A plugin's stderr is returned
// in its error when it fails, and dropped when it succeeds: a library does not write to its
// process's stderr.
func newDefaultExec() invoke.Exec {
	return &invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}}
}

// ExecPlugin implements invoke.Exec.
func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	if t := traceFrom(ctx); t != nil {
		t.started(filepath.Base(pluginPath))
	}
	if !e.passEnv {
		environ = pluginenv.Filter(environ)
	}
	return e.inner.ExecPlugin(ctx, pluginPath, stdinData, environ)
}

// FindInPath implements invoke.Exec.
func (e *pluginExec) FindInPath(plugin string, paths []string) (string, error) {
	return e.inner.FindInPath(plugin, paths)
}

// Decode implements invoke.Exec.
func (e *pluginExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return e.inner.Decode(jsonBytes)
}

// execTrace records, for one operation, the plugin that ran last. Plugins of an operation run
// one after the other, but the trace may be read while one runs, hence the mutex.
type execTrace struct {
	mu   sync.Mutex
	last string
}

type traceKey struct{}

// withTrace returns ctx carrying a new execTrace.
func withTrace(ctx context.Context) (context.Context, *execTrace) {
	t := &execTrace{}
	return context.WithValue(ctx, traceKey{}, t), t
}

func traceFrom(ctx context.Context) *execTrace {
	t, _ := ctx.Value(traceKey{}).(*execTrace)
	return t
}

func (t *execTrace) started(plugin string) {
	t.mu.Lock()
	t.last = plugin
	t.mu.Unlock()
}

// plugin returns the plugin that ran last, or "" if none ran.
func (t *execTrace) plugin() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}
