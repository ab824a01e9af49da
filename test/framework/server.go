//go:build linux

package framework

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options are how a test sets up a Server; a zero field keeps the default.
type Options struct {
	Net      *Net     // the network InstallConf installs; Runp and PodIP use its subnet
	Sock     string   // the socket (default: cri.sock in the server's dir)
	ConfDir  string   // --cni-conf-dir (default: net.d in the server's dir, created)
	BinDirs  []string // --cni-bin-dir (default: Env.CNIBin)
	CacheDir string   // --cni-cache-dir (default: cache in the server's dir)
	// StateDir is --state-dir as passed (default: state in the server's dir); a relative one
	// is taken from WorkDir.
	StateDir         string
	WorkDir          string        // the server's working directory (default: the test's)
	OperationTimeout time.Duration // --operation-timeout (default 1m)
	ShutdownGrace    time.Duration // --shutdown-grace (default 30s)
	Verbosity        int           // -v (default 4)
	Metrics          bool          // serve metrics on a free port of 127.0.0.1 (Goroutines)
	Env              []string      // added to the server's environment
	Flags            []string      // more serve flags, after the others
	ProcessGroup     bool          // the server leads a process group of its own (KillGroup)
	CrictlTimeout    time.Duration // crictl's --timeout (default 30s)
	// OwnCleanup leaves the cleanup to the test: NewServer registers none.
	OwnCleanup bool
	// AfterStop runs at cleanup once the server is stopped, before its logs are checked.
	AfterStop func()
	// Report, if set, hears the first line of every failure the server reports.
	Report func(msg string)
}

// Server is one `cnishim serve` over dirs of its own, restarted as a test wishes, with a CRI
// client and crictl set up to talk to it. Its cleanup (unless Options.OwnCleanup) fails the
// test if the server exited by itself, removes any sandbox left (starting the server again to
// do so if needed), stops it with SIGTERM (it must exit 0), and fails the test if a server
// log reports a data race; when the test failed, it prints the logs.
type Server struct {
	T        *testing.T
	Env      *Env
	Dir      string // the server's own temp dir
	Sock     string
	ConfDir  string
	CacheDir string
	StateDir string // absolute, for the test's own reads
	Crictlrc string // the crictl config file of the server
	Metrics  string // URL of /metrics, if Options.Metrics
	Net      *Net

	// RT is a CRI client connected to the socket; it reconnects across restarts.
	RT runtimeapi.RuntimeServiceClient

	opts    Options
	args    []string
	mu      sync.Mutex // guards the fields below
	cmd     *exec.Cmd
	done    chan struct{}
	logs    []string // log file of each process started
	needles []string
}

// NewServer sets up a server's dirs and CRI client without starting it.
func NewServer(t *testing.T, env *Env, o Options) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{
		T:        t,
		Env:      env,
		Dir:      dir,
		Sock:     cmp.Or(o.Sock, filepath.Join(dir, "cri.sock")),
		ConfDir:  cmp.Or(o.ConfDir, filepath.Join(dir, "net.d")),
		CacheDir: cmp.Or(o.CacheDir, filepath.Join(dir, "cache")),
		StateDir: cmp.Or(o.StateDir, filepath.Join(dir, "state")),
		Crictlrc: filepath.Join(dir, "crictl.yaml"),
		Net:      o.Net,
		opts:     o,
	}
	if !filepath.IsAbs(s.StateDir) {
		s.StateDir = filepath.Join(cmp.Or(o.WorkDir, mustGetwd(t)), s.StateDir)
	}
	if o.ConfDir == "" {
		if err := os.MkdirAll(s.ConfDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	crictlTimeout := cmp.Or(o.CrictlTimeout, 30*time.Second)
	// A crictl config of the test's own, so crictl reads nothing global.
	cf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: %d\ndebug: false\n", s.Sock, s.Sock, int(crictlTimeout.Seconds()))
	if err := os.WriteFile(s.Crictlrc, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	binDirs := o.BinDirs
	if len(binDirs) == 0 {
		binDirs = []string{env.CNIBin}
	}
	s.args = []string{"serve",
		"--listen", "unix://" + s.Sock,
		"--state-dir", cmp.Or(o.StateDir, s.StateDir),
		"--cni-conf-dir", s.ConfDir,
		"--cni-bin-dir", strings.Join(binDirs, ","),
		"--cni-cache-dir", s.CacheDir,
		"--operation-timeout", cmp.Or(o.OperationTimeout, time.Minute).String(),
		"--shutdown-grace", cmp.Or(o.ShutdownGrace, 30*time.Second).String(),
	}
	if o.Metrics {
		port := FreePort(t)
		s.Metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		s.args = append(s.args, "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port))
	}
	s.args = append(s.args, "-v", strconv.Itoa(cmp.Or(o.Verbosity, 4)))
	s.args = append(s.args, o.Flags...)
	conn, rt := s.Dial()
	s.RT = rt
	t.Cleanup(func() { _ = conn.Close() })
	if !o.OwnCleanup {
		t.Cleanup(s.cleanup)
	}
	return s
}

// StartServer is NewServer and Start.
func StartServer(t *testing.T, env *Env, o Options) *Server {
	t.Helper()
	s := NewServer(t, env, o)
	s.Start()
	return s
}

// Dial returns a new CRI client connection to the server's socket, for a test that wants
// several; the caller closes it.
func (s *Server) Dial() (*grpc.ClientConn, runtimeapi.RuntimeServiceClient) {
	s.T.Helper()
	conn, err := grpc.NewClient("unix://"+s.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.T.Fatal(err)
	}
	return conn, runtimeapi.NewRuntimeServiceClient(conn)
}

func mustGetwd(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// Errorf fails the test with a message that also goes to Options.Report.
func (s *Server) Errorf(format string, args ...any) {
	s.T.Helper()
	s.report(format, args...)
	s.T.Errorf(format, args...)
}

// Fatalf is Errorf that stops the test.
func (s *Server) Fatalf(format string, args ...any) {
	s.T.Helper()
	s.report(format, args...)
	s.T.Fatalf(format, args...)
}

func (s *Server) report(format string, args ...any) {
	if s.opts.Report != nil {
		first, _, _ := strings.Cut(fmt.Sprintf(format, args...), "\n")
		s.opts.Report(first)
	}
}

// Start starts a server process and waits until it answers, which it does only after its
// recovery and start-up GC. extraFlags are serve flags for this process alone, after
// Options.Flags.
func (s *Server) Start(extraFlags ...string) {
	s.T.Helper()
	s.Launch(extraFlags...)
	s.WaitAnswer()
}

// Launch starts a server process, with extraFlags as Start, without waiting for it.
func (s *Server) Launch(extraFlags ...string) {
	s.T.Helper()
	logf, err := os.CreateTemp(s.Dir, "serve-*.log")
	if err != nil {
		s.T.Fatal(err)
	}
	cmd := exec.Command(s.Env.Cnishim, append(slices.Clone(s.args), extraFlags...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.opts.WorkDir
	if len(s.opts.Env) > 0 {
		cmd.Env = append(os.Environ(), s.opts.Env...)
	}
	if s.opts.ProcessGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		s.T.Fatal(err)
	}
	_ = logf.Close()
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.logs = append(s.logs, logf.Name())
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
}

// WaitAnswer waits until the server launched last answers on its socket, failing the test at
// once if it exits.
func (s *Server) WaitAnswer() {
	s.T.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.T.Context()), 5*time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.RT.Version(cctx, &runtimeapi.VersionRequest{})
		ccancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			s.Fatalf("cnishim serve exited at start: %v\n%s", cmd.ProcessState, s.LogTail(1))
		case <-ctx.Done():
			s.Fatalf("cnishim serve did not answer on %s: %v\n%s", s.Sock, err, s.LogTail(1))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Answers reports whether the server accepts connections on its socket, which it opens only
// once its recovery is over.
func (s *Server) Answers() bool {
	c, err := net.DialTimeout("unix", s.Sock, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Running reports whether a server process was started and not stopped or killed since.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Exited reports whether the server launched last has exited.
func (s *Server) Exited() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// PID returns the running server's PID.
func (s *Server) PID() int {
	s.T.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.T.Fatal("no server running")
	}
	return s.cmd.Process.Pid
}

// take forgets the running process and returns it; nil if none runs.
func (s *Server) take() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	return cmd, done
}

// Kill kills the server with SIGKILL and waits for it to die.
func (s *Server) Kill() { s.T.Helper(); s.kill(false) }

// KillGroup kills the server's whole process group (Options.ProcessGroup) with SIGKILL, its
// plugins too, and waits for the server to die.
func (s *Server) KillGroup() { s.T.Helper(); s.kill(true) }

func (s *Server) kill(group bool) {
	s.T.Helper()
	cmd, done := s.take()
	if cmd == nil {
		s.T.Fatal("no server running")
	}
	pid := cmd.Process.Pid
	if group {
		pid = -pid
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.Fatalf("kill %d: %v", pid, err)
	}
	<-done
}

// Stop stops a running server with SIGTERM and fails the test unless it exits 0.
func (s *Server) Stop() {
	s.T.Helper()
	if err := s.Terminate(); err != nil && !errors.Is(err, errNotRunning) {
		s.Errorf("%v", err)
	}
}

var errNotRunning = errors.New("no server running")

// Terminate sends SIGTERM to the running server and waits for it to exit; an error says how it
// did not exit 0.
func (s *Server) Terminate() error {
	cmd, done := s.take()
	if cmd == nil {
		return errNotRunning
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if !cmd.ProcessState.Success() {
			return fmt.Errorf("cnishim serve exited with %v after SIGTERM\n%s", cmd.ProcessState, s.LogTail(1))
		}
		return nil
	case <-time.After(2 * time.Minute):
		if s.opts.ProcessGroup {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		} else {
			_ = cmd.Process.Kill()
		}
		<-done
		return errors.New("cnishim serve did not stop within 2 minutes of SIGTERM")
	}
}

// Restart stops the running server with SIGTERM (it must exit 0) and starts it again.
func (s *Server) Restart() {
	s.T.Helper()
	s.Stop()
	s.Start()
}

// Logs returns the log files of the server processes started, in order.
func (s *Server) Logs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.logs)
}

// Log returns the log of the i-th server process started.
func (s *Server) Log(i int) string {
	b, _ := os.ReadFile(s.Logs()[i])
	return string(b)
}

// LastLog returns the log of the server process started last.
func (s *Server) LastLog() string { return s.Log(len(s.Logs()) - 1) }

// LogTail returns the last lines of the logs of the last k server processes started.
func (s *Server) LogTail(k int) string {
	logs := s.Logs()
	var b strings.Builder
	for _, l := range logs[max(0, len(logs)-k):] {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", filepath.Base(l), min(len(lines), 60), strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	return b.String()
}

// Raced returns the log files that hold a race detector report.
func (s *Server) Raced() []string {
	var out []string
	for _, l := range s.Logs() {
		if data, _ := os.ReadFile(l); bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			out = append(out, l)
		}
	}
	return out
}

// cleanup is the default cleanup; see Server.
func (s *Server) cleanup() {
	t := s.T
	if s.Running() && s.Exited() {
		s.mu.Lock()
		st := s.cmd.ProcessState
		s.cmd = nil
		s.mu.Unlock()
		s.Errorf("cnishim serve exited before the test ended: %v\n%s", st, s.LogTail(1))
	}
	s.RemoveLeftoverPods()
	s.Stop()
	if s.opts.AfterStop != nil {
		s.opts.AfterStop()
	}
	for i := range s.Logs() {
		log := s.Log(i)
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("cnishim serve #%d reported a data race:\n%s", i+1, log)
		} else if t.Failed() {
			t.Logf("cnishim serve #%d log:\n%s", i+1, log)
		}
	}
}

// RemoveLeftoverPods removes, through the server, any sandbox a test left (a test that passes
// removes its own), so that a failed test does not leave pods on the machine; a server not
// running is started to do it if its state dir records sandboxes. It fails the test if a test
// that had not failed left some.
func (s *Server) RemoveLeftoverPods() {
	if !s.Running() {
		if len(s.SandboxFiles()) == 0 {
			return
		}
		s.Start()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.T.Context()), 5*time.Minute)
	defer cancel()
	ids, err := s.List(ctx)
	if err != nil {
		s.Errorf("list sandboxes at cleanup: %v", err)
		return
	}
	if len(ids) > 0 && !s.T.Failed() {
		s.Errorf("the test left %d sandboxes: %v", len(ids), ids)
	}
	for _, id := range ids {
		if _, err := s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			s.Errorf("remove sandbox %s at cleanup: %v", id, err)
		}
	}
}

// List returns the sorted IDs of the server's sandboxes.
func (s *Server) List(ctx context.Context) ([]string, error) {
	resp, err := s.RT.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range resp.GetItems() {
		ids = append(ids, it.GetId())
	}
	slices.Sort(ids)
	return ids, nil
}

// SandboxFiles lists the server's sandbox record files.
func (s *Server) SandboxFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(s.StateDir, "sandboxes"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// NetnsDir is where the server mounts its sandboxes' namespaces.
func (s *Server) NetnsDir() string { return filepath.Join(s.StateDir, "netns") }

// AddNeedle registers a sandbox ID or other string whose presence in a rule is a leak.
func (s *Server) AddNeedle(n string) {
	s.mu.Lock()
	s.needles = append(s.needles, n)
	s.mu.Unlock()
}

// Needles returns what AddNeedle registered (Runp registers each sandbox and host port).
func (s *Server) Needles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.needles)
}

// Goroutines returns the server's goroutine count from its metrics (Options.Metrics).
func (s *Server) Goroutines() (int, error) {
	ctx, cancel := context.WithTimeout(s.T.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Metrics, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return 0, errors.New("no go_goroutines in the server's metrics")
}

// GoroutinesSettle waits until the server runs at most baseline goroutines.
func (s *Server) GoroutinesSettle(baseline int) int {
	s.T.Helper()
	return countAtMost(s.T, "server goroutines", baseline, s.Goroutines)
}
