package cninetwork

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/lib/pluginenv"
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

// newDefaultExec returns the executor of plugin binaries the Plugin uses unless a test names
// another (internal/lib/seam): processExec, listing the plugins of set-ups in procs.
func newDefaultExec(procs *procSet) invoke.Exec { return &processExec{procs: procs} }

// processExec runs plugin binaries as libcni's invoke.RawExec does (stdin, stdout and
// environment per the CNI spec; an error from the plugin's stdout, or from its stderr when
// stdout is empty; retried while the binary is being written), and in addition reports each
// plugin's CPU time, with that of every process it waited for, to the operation's cpuMeter.
// A plugin's stderr is returned in its error when it fails, and dropped when it succeeds: a
// library does not write to its process's stderr.
//
// What a plugin's deadline means. The plugin runs as the leader of a process group of its own
// (on Linux), so a signal to cnishim's group, such as a Ctrl-C at a terminal, does not reach
// it; every process it starts without leaving that group (a delegated IPAM plugin, a helper)
// belongs to it. When the caller's ctx ends (the operation's deadline, or a cancellation),
// the whole group is killed with SIGKILL at once, and the call returns once the plugin has
// exited, with the error libcni's executor gives a killed plugin ("netplugin failed with no
// error message: signal: killed"), so callers check ctx.Err(). Once the plugin exits, its
// stdout and stderr are read for outputGrace more; if something still holds them then, the
// group is killed (the plugin, not yet reaped, keeps its group's ID from reuse), and the pipes
// are closed if that does not release them within outputGrace, so a helper left behind cannot
// hold the operation: the result of a plugin that exited 0 is used all the same. Stdout is capped at maxStdout: a
// plugin that writes more is killed with its group at once and fails with an error naming it
// ("plugin \"bridge\": wrote more than 4 MiB to stdout"). Of stderr the first maxStderr
// bytes are kept and the rest is read and dropped, the error saying how much. A process the
// plugin moved to another group or session (setsid) is out of reach, as it is of libcni. Off
// Linux the plugin shares cnishim's process group, and only the plugin itself is killed.
//
// Unlike libcni's executor, it waits for the plugin to exit in the Go runtime's network poller
// before reaping it (procwait.AwaitExitContext): os/exec reaps in a blocking waitid, and the
// goroutine keeps its P through it until the runtime's monitor takes the P back, which can be
// 10 ms later; with a pod's chains side by side, GOMAXPROCS chains waiting for their plugins
// left the other chains, and the goroutines that feed and drain their plugins' stdin and
// stdout, without a P while the CPUs idled. And it passes no OpenTelemetry trace context to
// plugins (the Plugin starts no spans).
type processExec struct {
	version.PluginDecoder
	// procs lists the plugin processes of set-ups (operations with a cpuMeter) while they run.
	procs *procSet
}

var _ invoke.Exec = (*processExec)(nil)

// textBusyRetries is how often a plugin whose binary is being written ("text file busy") is
// retried, a second apart, as libcni does.
const textBusyRetries = 5

const (
	// maxStdout is the most a plugin may write to stdout: its result, or its error, as JSON.
	// A plugin that writes more is killed, with its process group.
	maxStdout = 4 << 20
	// maxStderr is how much of a plugin's stderr is kept for its error; the rest is read and
	// dropped.
	maxStderr = 64 << 10
	// outputGrace is how long a plugin's stdout and stderr are still read once it has exited,
	// for what it wrote last; whatever holds them after that is killed.
	outputGrace = 200 * time.Millisecond
)

// ExecPlugin implements invoke.Exec.
func (e *processExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		out, busy, err := e.run(ctx, pluginPath, stdinData, environ)
		if err == nil {
			return out, nil
		}
		if attempt < textBusyRetries && busy {
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Second):
			}
			continue
		}
		return nil, err
	}
}

// errStdoutFull is the cause of a plugin's end when it wrote more than maxStdout.
var errStdoutFull = errors.New("stdout full")

// run runs the plugin once, as the doc of processExec says. busy reports that the plugin could
// not start because its binary is being written (ETXTBSY), so that only a failed start, never
// a plugin's own error text, is retried.
func (e *processExec) run(ctx context.Context, pluginPath string, stdinData []byte, environ []string) (out []byte, busy bool, err error) {
	if err := ctx.Err(); err != nil {
		// As os/exec refuses to start a command whose context ended.
		return nil, false, pluginError(err, nil, nil, 0)
	}
	child, own, err := pipes()
	if err != nil {
		return nil, false, pluginError(err, nil, nil, 0)
	}
	proc, err := startPlugin(pluginPath, environ, child[:])
	closeFiles(child[:]...)
	if err != nil {
		closeFiles(own[:]...)
		return nil, errors.Is(err, syscall.ETXTBSY), pluginError(err, nil, nil, 0)
	}
	stdinW, stdoutR, stderrR := own[0], own[1], own[2]
	listed := meterFrom(ctx) != nil
	if listed {
		e.procs.add(proc.pid())
	}

	// The plugin ends when ctx does, or when its stdout overflows.
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		// An error means the plugin exited, or its stdin was closed below, without reading it
		// all; the plugin says what went wrong, if anything did.
		_, _ = stdinW.Write(stdinData)
		stdinW.Close()
	})
	stdout := &cappedBuffer{limit: maxStdout, onOver: func() { stop(errStdoutFull) }}
	stderr := &cappedBuffer{limit: maxStderr}
	var readers sync.WaitGroup
	readers.Go(func() { stdout.readFrom(stdoutR) })
	readers.Go(func() { stderr.readFrom(stderrR) })
	outputDone := make(chan struct{})
	go func() { readers.Wait(); close(outputDone) }()

	if proc.awaitExit(runCtx) != nil {
		// The plugin is not reaped yet: its group, named by its PID, is still its own.
		proc.killGroup()
		_ = proc.awaitExit(context.WithoutCancel(ctx))
	}
	if !closedWithin(outputDone, outputGrace) {
		// Something the plugin started holds its stdout or stderr.
		proc.killGroup()
		if !closedWithin(outputDone, outputGrace) {
			// It left the group: stop reading.
			stdoutR.Close()
			stderrR.Close()
			<-outputDone
		}
	}
	stdoutR.Close()
	stderrR.Close()
	// Unblocks a write into a stdin that a process left behind holds without reading.
	stdinW.Close()
	wg.Wait()
	if listed {
		// Before the reap, after which the PID may name another process.
		e.procs.remove(proc.pid())
	}
	state, err := proc.reap()
	if state != nil {
		// The kernel's account of the plugin and of every descendant it waited for.
		meterFrom(ctx).add(state.UserTime() + state.SystemTime())
	}

	if stdout.dropped > 0 {
		return nil, false, &types.Error{Msg: fmt.Sprintf("plugin %q: wrote more than %s to stdout", filepath.Base(pluginPath), sizeString(maxStdout))}
	}
	if err == nil && !state.Success() {
		err = &exec.ExitError{ProcessState: state}
	}
	if err != nil {
		return nil, false, pluginError(err, stdout.buf, stderr.buf, stderr.dropped)
	}
	return stdout.buf, false, nil
}

// pipes returns the plugin's ends of three pipes, its stdin, stdout and stderr, and the ends
// the executor keeps.
func pipes() (child, own [3]*os.File, err error) {
	for i := range child {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(child[:i]...)
			closeFiles(own[:i]...)
			return child, own, err
		}
		if i == 0 {
			child[i], own[i] = r, w
		} else {
			child[i], own[i] = w, r
		}
	}
	return child, own, nil
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// closedWithin returns whether ch is closed within d.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// sizeString formats a size of whole MiB or KiB, else of bytes.
func sizeString(n int) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// cappedBuffer keeps the first limit bytes read into it. Past limit it calls onOver, if set,
// and stops reading; without onOver it reads on to EOF and counts what it drops.
type cappedBuffer struct {
	limit  int
	onOver func()

	// Written by readFrom, read once it returned.
	buf     []byte
	dropped int64 // bytes read past limit
}

// readFrom reads r into b until EOF or an error (r closed), or past b's limit with onOver set.
func (b *cappedBuffer) readFrom(r io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		keep := min(n, b.limit-len(b.buf))
		if len(b.buf)+keep > cap(b.buf) {
			// Grow by doubling, never past the limit: a plugin's output costs at most twice
			// the limit in allocations.
			grown := make([]byte, len(b.buf), min(max(2*cap(b.buf), len(b.buf)+keep, 4<<10), b.limit))
			copy(grown, b.buf)
			b.buf = grown
		}
		b.buf = append(b.buf, chunk[:keep]...)
		if n > keep {
			b.dropped += int64(n - keep)
			if b.onOver != nil {
				b.onOver()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pluginError is the error of a plugin that failed with err: the CNI error it printed on
// stdout, else one that quotes its stderr, as libcni's executor reports it. dropped is how
// much of its stderr was not kept.
func pluginError(err error, stdout, stderr []byte, dropped int64) error {
	e := &types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		e.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0 && dropped > 0:
		e.Msg = fmt.Sprintf("netplugin failed: %q (the first %s of its stderr; %d more bytes dropped): %v", string(stderr), sizeString(len(stderr)), dropped, err)
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
