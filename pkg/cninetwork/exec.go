package cninetwork

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cnishim/cnishim/internal/pluginenv"
	"github.com/cnishim/cnishim/internal/procwait"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
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

// newDefaultExec returns the executor of plugin binaries: rawExec, with libcni's lookup in the
// bin dirs and its decoding of VERSION answers. A plugin's stderr is returned in its error when
// it fails, and dropped when it succeeds: a library does not write to its process's stderr.
func newDefaultExec() invoke.Exec {
	return rawExec{}
}

// rawExec runs plugin binaries as libcni's invoke.RawExec does: the configuration on stdin,
// the result from stdout, a failing plugin's error from its stdout (a CNI error) or else its
// stderr, a run tried again a second later while the binary is being written ("text file
// busy"), the plugin killed when the context ends. Unlike it, it waits for the plugin to exit
// in the Go runtime's network poller before reaping it (procwait.AwaitExit). os/exec reaps in a
// blocking waitid, and the goroutine keeps its P through it until the runtime's monitor takes
// the P back, which can be 10 ms later: with a pod's chains side by side, GOMAXPROCS chains
// waiting for their plugins left the other chains, and the goroutines that feed and drain
// their plugins' stdin and stdout, without a P, and the CPUs idle. (libcni also passes an
// OpenTelemetry trace context from the context on; the Plugin starts no spans.)
type rawExec struct{}

var _ invoke.Exec = rawExec{}

// ExecPlugin implements invoke.Exec.
func (rawExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	for try := 1; ; try++ {
		stdout, stderr, err := runPlugin(ctx, pluginPath, stdinData, environ)
		if err == nil {
			return stdout, nil
		}
		if try <= 5 && strings.Contains(err.Error(), "text file busy") && ctx.Err() == nil {
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
			}
		}
		return nil, pluginErr(err, stdout, stderr)
	}
}

// runPlugin runs the plugin binary at path once.
func runPlugin(ctx context.Context, path string, stdinData []byte, environ []string) (stdout, stderr []byte, err error) {
	var outBuf, errBuf bytes.Buffer
	c := exec.CommandContext(ctx, path)
	c.Env = environ
	c.Stdin = bytes.NewReader(stdinData)
	c.Stdout, c.Stderr = &outBuf, &errBuf
	if err := c.Start(); err != nil {
		return nil, nil, err
	}
	procwait.AwaitExit(c.Process)
	err = c.Wait()
	return outBuf.Bytes(), errBuf.Bytes(), err
}

// pluginErr is the error of a plugin that failed with err: the CNI error on its stdout, or one
// made of its stderr, in libcni's words.
func pluginErr(err error, stdout, stderr []byte) error {
	emsg := types.Error{}
	if len(stdout) == 0 {
		if len(stderr) == 0 {
			emsg.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
		} else {
			emsg.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
		}
	} else if perr := json.Unmarshal(stdout, &emsg); perr != nil {
		emsg.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
	}
	return &emsg
}

// FindInPath implements invoke.Exec.
func (rawExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Decode implements invoke.Exec.
func (rawExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(jsonBytes)
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
