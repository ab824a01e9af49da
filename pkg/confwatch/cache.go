package confwatch

import (
	"bytes"
	"context"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// memoExec is the invoke.Exec the Watcher hands libcni for validation. It remembers each
// successful VERSION answer by the plugin binary's identity (path, size, mtime, mode, inode,
// device) and the request, so validating many networks that use the same plugin, or
// revalidating after the binary's directory changed, runs each binary's VERSION once. Any other
// command, and any failure, goes straight to the inner executor.
//
// memoExec is used only during a scan, under Watcher.scanMu, which guards its fields.
type memoExec struct {
	inner invoke.Exec
	// bins maps a binary's identity to its memoized answers, by request.
	bins map[string]*memoBin
	// seq is the current scan's sequence number; binaries the latest scan did not use are
	// dropped by sweep.
	seq uint64
}

type memoBin struct {
	out  map[string][]byte
	used uint64
}

var _ invoke.Exec = (*memoExec)(nil)

func newMemoExec(inner invoke.Exec) *memoExec {
	return &memoExec{inner: inner, bins: map[string]*memoBin{}}
}

// touch marks the binary with identity id as used by the current scan, keeping its answers.
func (m *memoExec) touch(id string) {
	if b, ok := m.bins[id]; ok {
		b.used = m.seq
	}
}

// ExecPlugin runs the plugin, answering VERSION from memory when the binary is unchanged.
func (m *memoExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	if envValue(environ, "CNI_COMMAND") != "VERSION" {
		return m.inner.ExecPlugin(ctx, pluginPath, stdin, environ)
	}
	id, err := fileIdentity(pluginPath)
	if err != nil {
		return m.inner.ExecPlugin(ctx, pluginPath, stdin, environ)
	}
	b := m.bins[id]
	if b == nil {
		b = &memoBin{out: map[string][]byte{}}
		m.bins[id] = b
	}
	b.used = m.seq
	if out, ok := b.out[string(stdin)]; ok {
		return bytes.Clone(out), nil
	}
	out, err := m.inner.ExecPlugin(ctx, pluginPath, stdin, environ)
	if err == nil {
		b.out[string(stdin)] = bytes.Clone(out)
	}
	return out, err
}

// FindInPath delegates to the inner executor.
func (m *memoExec) FindInPath(plugin string, paths []string) (string, error) {
	return m.inner.FindInPath(plugin, paths)
}

// Decode delegates to the inner executor.
func (m *memoExec) Decode(b []byte) (version.PluginInfo, error) { return m.inner.Decode(b) }

// sweep drops the binaries the latest scan did not use.
func (m *memoExec) sweep() {
	for id, b := range m.bins {
		if b.used != m.seq {
			delete(m.bins, id)
		}
	}
}

// envValue returns the last value of key in environ, as exec uses the last one.
func envValue(environ []string, key string) string {
	for i := len(environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(environ[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// validation is one cached validation result: a valid network, or why it is not valid.
type validation struct {
	net  *Network
	err  error
	used uint64
}
