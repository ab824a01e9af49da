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
	"sync/atomic"
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

// newDefaultExec returns the executor of plugin binaries the Plugin uses unless WithExec
// names another: processExec, listing the plugins of set-ups in procs.
func newDefaultExec(procs *procSet) invoke.Exec { return &processExec{procs: procs} }

// processExec runs plugin binaries as libcni's invoke.RawExec does (stdin, stdout and
// environment per the CNI spec; an error from the plugin's stdout, or from its stderr when
// stdout is empty; retried while the binary is being written), and in addition reports each
// plugin's CPU time, with that of every process it waited for, to the operation's cpuMeter.
// A plugin's stderr is returned in its error when it fails, and dropped when it succeeds: a
// library does not write to its process's stderr.
//
// Unlike libcni's executor, it waits for the plugin to exit in the Go runtime's network poller
// before reaping it (procwait.AwaitExit): os/exec reaps in a blocking waitid, and the goroutine
// keeps its P through it until the runtime's monitor takes the P back, which can be 10 ms
// later; with a pod's chains side by side, GOMAXPROCS chains waiting for their plugins left
// the other chains, and the goroutines that feed and drain their plugins' stdin and stdout,
// without a P while the CPUs idled. And it passes no OpenTelemetry trace context to plugins
// (the Plugin starts no spans).
type processExec struct {
	version.PluginDecoder
	// procs lists the plugin processes of set-ups (operations with a cpuMeter) while they run.
	procs *procSet
}

var _ invoke.Exec = (*processExec)(nil)

// textBusyRetries is how often a plugin whose binary is being written ("text file busy") is
// retried, a second apart, as libcni does.
const textBusyRetries = 5

// ExecPlugin implements invoke.Exec.
func (e *processExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		c := exec.CommandContext(ctx, pluginPath)
		c.Env = environ
		c.Stdin = bytes.NewReader(stdinData)
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Start()
		if err == nil {
			listed := meterFrom(ctx) != nil
			if listed {
				e.procs.add(c.Process.Pid)
			}
			procwait.AwaitExit(c.Process)
			err = c.Wait()
			if listed {
				e.procs.remove(c.Process.Pid)
			}
		}
		if c.ProcessState != nil {
			// The kernel's account of the plugin and of every descendant it waited for.
			meterFrom(ctx).add(c.ProcessState.UserTime() + c.ProcessState.SystemTime())
		}
		if err == nil {
			return stdout.Bytes(), nil
		}
		if attempt < textBusyRetries && strings.Contains(err.Error(), "text file busy") {
			select {
			case <-ctx.Done():
				return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
			case <-time.After(time.Second):
			}
			continue
		}
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
}

// pluginError is the error of a plugin that failed with err: the CNI error it printed on
// stdout, else one that quotes its stderr, as libcni's executor reports it.
func pluginError(err error, stdout, stderr []byte) error {
	e := &types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q: %v", string(stderr), err)
	default:
		if perr := json.Unmarshal(stdout, e); perr != nil {
			e.Msg = fmt.Sprintf("netplugin failed but error parsing its diagnostic message %q: %v", string(stdout), perr)
		}
	}
	return e
}

// FindInPath implements invoke.Exec.
func (e *processExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// procSet is a set of process IDs, safe for concurrent use. A nil *procSet holds nothing.
type procSet struct {
	mu   sync.Mutex
	pids map[int]struct{}
}

func (s *procSet) add(pid int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.pids == nil {
		s.pids = map[int]struct{}{}
	}
	s.pids[pid] = struct{}{}
	s.mu.Unlock()
}

func (s *procSet) remove(pid int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.pids, pid)
	s.mu.Unlock()
}

// list returns the set's process IDs.
func (s *procSet) list() []int {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, 0, len(s.pids))
	for pid := range s.pids {
		out = append(out, pid)
	}
	return out
}

// cpuMeter adds up, for one operation, the CPU time of the plugins it ran, as far as the
// executor reports it. Chains of one operation may run side by side, hence the atomics.
type cpuMeter struct {
	execs, measured atomic.Int64
	cpu             atomic.Int64 // nanoseconds
}

type meterKey struct{}

// withCPUMeter returns ctx carrying a new cpuMeter.
func withCPUMeter(ctx context.Context) (context.Context, *cpuMeter) {
	m := &cpuMeter{}
	return context.WithValue(ctx, meterKey{}, m), m
}

// meterFrom returns ctx's cpuMeter, or nil.
func meterFrom(ctx context.Context) *cpuMeter {
	m, _ := ctx.Value(meterKey{}).(*cpuMeter)
	return m
}

// started counts a plugin exec.
func (m *cpuMeter) started() {
	if m != nil {
		m.execs.Add(1)
	}
}

// add counts the CPU time of a plugin exec that ended.
func (m *cpuMeter) add(d time.Duration) {
	if m != nil {
		m.measured.Add(1)
		m.cpu.Add(int64(d))
	}
}

// total returns the CPU time counted, and whether it covers every plugin exec counted.
func (m *cpuMeter) total() (time.Duration, bool) {
	n := m.execs.Load()
	return time.Duration(m.cpu.Load()), n > 0 && m.measured.Load() == n
}

// ExecPlugin implements invoke.Exec.
func (e *pluginExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	if t := traceFrom(ctx); t != nil {
		t.started(filepath.Base(pluginPath))
	}
	meterFrom(ctx).started()
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
