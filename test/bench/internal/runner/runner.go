//go:build linux

package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// Cell is one scenario: how many pods, how many callers at once, and whether each pod has a
// port mapping.
type Cell struct {
	Pods    int  `json:"pods"`
	Callers int  `json:"callers"`
	PortMap bool `json:"portMap"`
	// IPAMWait, when above zero, puts the pods on the slow-IPAM network (see host.Setup),
	// whose IPAM waits this long on ADD.
	IPAMWait time.Duration `json:"ipamWait,omitempty"`
	// Mixed keeps the pods on the benchmark network and puts every other pod on the
	// slow-IPAM network too, as an extra network (cnishim only).
	Mixed bool `json:"mixed,omitempty"`
}

func (c Cell) String() string {
	s := fmt.Sprintf("%d pods, %d caller", c.Pods, c.Callers)
	if c.Callers != 1 {
		s += "s"
	}
	if c.PortMap {
		s += ", hostPort"
	}
	switch {
	case c.Mixed:
		s += fmt.Sprintf(", half also on a %s IPAM", c.IPAMWait)
	case c.IPAMWait > 0:
		s += fmt.Sprintf(", %s IPAM", c.IPAMWait)
	}
	return s
}

// Short is a compact label: 200×8, or 200×8 hp with a hostPort, 200×8 2s with a slow IPAM,
// 200×8 mixed 2s for the mixed storm.
func (c Cell) Short() string {
	s := fmt.Sprintf("%d×%d", c.Pods, c.Callers)
	if c.PortMap {
		s += " hp"
	}
	if c.Mixed {
		s += " mixed"
	}
	if c.IPAMWait > 0 {
		s += " " + c.IPAMWait.String()
	}
	return s
}

// Setup is the networks of the cell's pods.
func (c Cell) Setup() host.Setup { return host.Setup{IPAMWait: c.IPAMWait, Mixed: c.Mixed} }

// Variant is one implementation with its settings.
type Variant struct {
	Name string `json:"name"`
	Impl string `json:"impl"`
	// Limits are cnishim's admission limits; nil is the Plugin's default.
	Limits *impls.Limits `json:"limits,omitempty"`
}

// Item is a cell and the variants measured on it, for the first Rounds rounds.
type Item struct {
	Cell     Cell      `json:"cell"`
	Variants []Variant `json:"variants"`
	Rounds   int       `json:"rounds"`
}

// Run is one measurement: one variant over one cell in one round.
type Run struct {
	Round   int     `json:"round"`
	Cell    Cell    `json:"cell"`
	Variant Variant `json:"variant"`
	Result  *Result `json:"result,omitempty"`
	Leaks   string  `json:"leaks"`
	// Skipped says why the run measured nothing.
	Skipped string    `json:"skipped,omitempty"`
	Start   time.Time `json:"start"`
}

// Options are a benchmark's settings.
type Options struct {
	Plan      []Item
	BinDir    string
	OpTimeout time.Duration
	// Settle is the longest wait for the CPUs to go quiet before each run.
	Settle time.Duration
	// Worker is the command that runs a worker; it reads a Job on stdin and writes a Result.
	Worker []string
	// Log receives one line per run.
	Log io.Writer
	// Stderr receives the workers' stderr; nil means os.Stderr.
	Stderr io.Writer
	// OnRun is called after every run, with every run so far (for saving progress).
	OnRun func([]Run)
	// Cnitest is the cnitest test plugin's binary, the slow IPAM; needed when a cell has
	// an IPAM wait.
	Cnitest string
}

// ErrFailed says a run failed or leaked; the runs measured so far are still returned.
var ErrFailed = errors.New("benchmark failed")

// Execute runs the plan: one unrecorded warm-up run, then round by round, cell by cell, each
// variant in turn, the order rotated by one each round (A B C, B C A, C A B), each run in a
// fresh worker. It stops at the first run that fails or leaks, after cleaning up what that run
// left. Cancelling ctx kills the running worker and cleans up likewise.
func Execute(ctx context.Context, o Options) (runs []Run, retErr error) {
	env, err := host.NewEnv(o.BinDir, "1.0.0", host.Bench)
	if err != nil {
		return nil, err
	}
	defer func() { retErr = errors.Join(retErr, env.Close()) }()
	for _, it := range o.Plan {
		if it.Cell.IPAMWait > 0 {
			if o.Cnitest == "" {
				return nil, fmt.Errorf("%s: a slow IPAM needs the cnitest plugin (Options.Cnitest)", it.Cell)
			}
			if err := env.AddSlowNetwork(o.Cnitest, host.Slow); err != nil {
				return nil, err
			}
			break
		}
	}

	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	rounds := 0
	for _, it := range o.Plan {
		rounds = max(rounds, it.Rounds)
	}
	seq := 0

	// The first run of a benchmark pays for what ran before it: plugin binaries and iptables
	// not yet in the page cache, and the kernel still destroying the namespaces of the
	// micro-benchmarks. The first cell is run once with the floor, unrecorded, so that no
	// measured run pays for it. A warm-up that fails or leaks fails the benchmark.
	if len(o.Plan) > 0 {
		seq++
		c := o.Plan[0].Cell
		c.Mixed = false // the floor has one network per pod
		warm := Run{Cell: c, Variant: Variant{Name: "warm-up", Impl: impls.Floor}}
		res, leaks, err := runOne(ctx, env, &o, warm.Variant, c, makePods(hex.EncodeToString(nonce), seq, c))
		warm.Result, warm.Leaks = res, leaks
		logRun(o.Log, &warm, err)
		if err != nil {
			return runs, fmt.Errorf("%w: warm-up, %s: %w", ErrFailed, c, err)
		}
	}

	for round := 1; round <= rounds; round++ {
		for _, it := range o.Plan {
			if round > it.Rounds {
				continue
			}
			// Each round starts the cell with the next variant (A B C, B C A, C A B, ...):
			// the first run of a cell follows the previous cell's, whose namespaces the kernel
			// may still be destroying, and no variant should always be the one that pays.
			for k := range it.Variants {
				v := it.Variants[(k+round-1)%len(it.Variants)]
				seq++
				r := Run{Round: round, Cell: it.Cell, Variant: v, Start: time.Now()}
				pods := makePods(hex.EncodeToString(nonce), seq, it.Cell)
				res, leaks, err := runOne(ctx, env, &o, v, it.Cell, pods)
				r.Result, r.Leaks = res, leaks
				if err != nil && (res == nil || res.InitError != "") {
					// Nothing was measured: the report says why in the variant's row.
					r.Skipped = "run failed: " + failureNote(err)
				}
				runs = append(runs, r)
				logRun(o.Log, &r, err)
				if o.OnRun != nil {
					o.OnRun(runs)
				}
				if err != nil {
					return runs, fmt.Errorf("%w: round %d, %s, %s: %w", ErrFailed, round, it.Cell, v.Name, err)
				}
				if ctx.Err() != nil {
					return runs, ctx.Err()
				}
			}
		}
	}
	return runs, nil
}

func logRun(w io.Writer, r *Run, err error) {
	if r.Result == nil {
		fmt.Fprintf(w, "round %d  %-22s %-17s error: %v\n", r.Round, r.Cell, r.Variant.Name, err)
		return
	}
	s, t := &r.Result.Setup, &r.Result.Teardown
	fmt.Fprintf(w, "round %d  %-22s %-17s setup %6.1f pods/s p50 %7.1f ms | teardown %6.1f pods/s p50 %7.1f ms | leaks: %s\n",
		r.Round, r.Cell, r.Variant.Name,
		PodsPerSec(s), ms(Percentile(s.Latencies, 50)), PodsPerSec(t), ms(Percentile(t.Latencies, 50)), r.Leaks)
	if err != nil {
		fmt.Fprintf(w, "  error: %v\n", err)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// makePods describes a cell's pods. IDs are 64 hex characters, unique to this benchmark
// invocation (nonce) and run (seq); host ports are 30000 + i. In a mixed cell, every other
// pod is on the slow network too.
func makePods(nonce string, seq int, c Cell) []impls.PodSpec {
	pods := make([]impls.PodSpec, c.Pods)
	for i := range pods {
		prefix := fmt.Sprintf("%s%04x%06x", nonce, seq, i)
		sum := sha256.Sum256([]byte(prefix))
		id := (prefix + hex.EncodeToString(sum[:]))[:64]
		pods[i] = impls.PodSpec{
			ID:        id,
			Name:      fmt.Sprintf("bench-%d-%d", seq, i),
			Namespace: "cnibench",
			UID:       hex.EncodeToString(sum[8:24]),
		}
		if c.PortMap {
			pods[i].HostPort = int32(30000 + i)
			pods[i].HostIP = host.HostIP
		}
		if c.Mixed && i%2 == 1 {
			pods[i].ExtraNetwork = host.Slow.Network
		}
	}
	return pods
}

// runOne measures one variant over one cell: namespaces first, outside the timed region,
// then the worker, then the leak check, and cleanup whatever happened.
func runOne(ctx context.Context, env *host.Env, o *Options, v Variant, c Cell, pods []impls.PodSpec) (_ *Result, leaks string, retErr error) {
	if err := env.CreateNetNS(pods); err != nil {
		return nil, "", err
	}
	// Cleanup must run even when ctx was cancelled (an interrupt).
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	defer func() {
		retErr = errors.Join(retErr, env.RemoveNetNS(pods))
	}()
	host.WaitQuiet(o.Settle)

	cfg, err := env.Config(c.Setup(), v.Limits)
	if err != nil {
		return nil, "", err
	}
	res, werr := startWorker(ctx, o, &Job{
		Impl: v.Impl, Config: cfg, Pods: pods, Parallelism: c.Callers, OpTimeout: opTimeout(o.OpTimeout, c),
	})
	switch {
	case werr != nil:
	case res.InitError != "":
		werr = errors.New(res.InitError)
	case res.Setup.Failed > 0 || res.Teardown.Failed > 0:
		werr = fmt.Errorf("%d set-ups and %d teardowns failed; first: %v", res.Setup.Failed, res.Teardown.Failed,
			append(res.Setup.Errors, res.Teardown.Errors...)[0])
	}

	l, lerr := env.CheckLeaks(pods)
	if lerr != nil {
		return res, "", errors.Join(werr, fmt.Errorf("leak check: %w", lerr))
	}
	if l.Clean() && werr == nil {
		return res, "none", nil
	}
	// Something failed or leaked: release everything with raw libcni, then say what
	// was left.
	serr := env.Sweep(cleanupCtx, pods)
	after, aerr := env.CheckLeaks(pods)
	if aerr == nil && !after.Clean() {
		aerr = fmt.Errorf("still left after sweep: %s", after)
	}
	var leakErr error
	if !l.Clean() {
		leakErr = fmt.Errorf("leaked: %s", l)
	}
	return res, l.String(), errors.Join(werr, leakErr, serr, aerr)
}

// opTimeout is the hang guard of one call. With a slow IPAM, a call may queue behind every
// other pod's wait (a fixed ADD bound of 1 at worst), and that is measured, not a hang.
func opTimeout(base time.Duration, c Cell) time.Duration {
	if c.IPAMWait <= 0 {
		return base
	}
	return base + time.Duration(c.Pods)*c.IPAMWait
}

// startWorker runs a worker process in its own process group; cancelling ctx kills the
// whole group, plugins included, so none can race with the cleanup.
func startWorker(ctx context.Context, o *Options, job *Job) (*Result, error) {
	in, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, o.Worker[0], o.Worker[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	// The worker's stderr goes to ours as it comes, and is kept so that a panic (an
	// implementation's, or the harness's) is in the error that fails the run.
	var to io.Writer = os.Stderr
	if o.Stderr != nil {
		to = o.Stderr
	}
	cmd.Stderr = io.MultiWriter(to, &stderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		// A plugin or an iptables it ran may outlive a killed worker for a moment; the
		// cleanup must not race with it.
		if gerr := waitGroupGone(cmd.Process.Pid, 30*time.Second); gerr != nil {
			err = errors.Join(err, gerr)
		}
	}
	if err != nil {
		if p := panicOf(stderr.String()); p != "" {
			return nil, fmt.Errorf("worker %s: %w\n%s", job.Impl, err, p)
		}
		return nil, fmt.Errorf("worker %s: %w", job.Impl, err)
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("worker %s: result: %w", job.Impl, err)
	}
	return &res, nil
}

// failureNote is err in one line for a report's table: its first two lines (the error and,
// for a worker that panicked, the panic), without table separators.
func failureNote(err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" && len(parts) < 2 {
			parts = append(parts, strings.ReplaceAll(l, "|", "/"))
		}
	}
	return strings.Join(parts, "; ")
}

// panicOf returns the first panic in a Go process's stderr with the first lines of its trace
// (the panicking goroutine's frames), or "" if there is none.
func panicOf(stderr string) string {
	i := strings.Index(stderr, "panic: ")
	if i < 0 {
		return ""
	}
	lines := strings.SplitN(stderr[i:], "\n", 16)
	return strings.Join(lines[:min(len(lines), 15)], "\n")
}

// waitGroupGone kills what is left of process group pgid and waits until none of it runs.
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still running after %s", pgid, timeout)
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
}
