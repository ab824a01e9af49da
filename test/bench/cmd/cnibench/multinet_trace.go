//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/lib/procwait"
	"github.com/cnishim/cnishim/test/bench/internal/runner"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
)

// mnTracer is the executor of the breakdown: it runs plugins as the Plugin's executor does (pipes
// for stdin, stdout and stderr) and records, for each ADD of a traced set-up, when the plugin
// was forked, when exec returned to the caller, when it ended, and its CPU time and context
// switches from wait4's rusage (which includes the plugin's own reaped children: bridge's
// host-local).
type mnTracer struct {
	cg *mnCgroup

	mu    sync.Mutex
	on    bool
	execs []mnExec
	self  time.Duration
	cgCPU time.Duration
	cgRQ  time.Duration
	idle  time.Duration
}

var _ invoke.Exec = (*mnTracer)(nil)

// mnExec is one plugin run.
type mnExec struct {
	ifName        string
	t0, t1, t2    time.Time // before fork, after exec returned to the caller, after wait
	cpu           time.Duration
	nvcsw, nivcsw int64
	// startCPU is the shim's CPU time in forking and execing the plugin.
	startCPU time.Duration
}

// mnSample is one traced set-up.
type mnSample struct {
	start      time.Time
	wall       time.Duration
	execs      []mnExec
	self       time.Duration // this process's CPU: the shim and the bench
	cgCPU      time.Duration // the cgroup's CPU: the shim and every plugin
	cgRQ       time.Duration // the cgroup's CPU pressure "some": time a task of it waited for a CPU
	cgroupRead bool
	// idle is the machine's idle time, summed over its CPUs, from /proc/stat: in ticks of
	// 10 ms, so only its mean over many set-ups means something.
	idle time.Duration
}

// ExecPlugin implements invoke.Exec.
func (t *mnTracer) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	c := exec.CommandContext(ctx, pluginPath)
	c.Env = environ
	c.Stdin = bytes.NewReader(stdinData)
	c.Stdout, c.Stderr = &stdout, &stderr
	// On one thread, whose CPU time is then this goroutine's, while it forks and execs.
	runtime.LockOSThread()
	c0 := threadCPU()
	t0 := time.Now()
	err := c.Start()
	t1 := time.Now()
	c1 := threadCPU()
	runtime.UnlockOSThread()
	if err == nil {
		procwait.AwaitExit(c.Process) // as the Plugin's executor does
		err = c.Wait()
	}
	e := mnExec{t0: t0, t1: t1, t2: time.Now(), startCPU: c1 - c0}
	if c.ProcessState != nil {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			e.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			e.nvcsw, e.nivcsw = ru.Nvcsw, ru.Nivcsw
		}
	}
	var add bool
	for _, kv := range environ {
		if kv == "CNI_COMMAND=ADD" {
			add = true
		}
		if v, ok := strings.CutPrefix(kv, "CNI_IFNAME="); ok {
			e.ifName = v
		}
	}
	t.mu.Lock()
	if t.on && add {
		t.execs = append(t.execs, e)
	}
	t.mu.Unlock()
	if err != nil {
		var perr types.Error
		if json.Unmarshal(stdout.Bytes(), &perr) == nil && perr.Msg != "" {
			return nil, &perr
		}
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(pluginPath), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// FindInPath implements invoke.Exec.
func (t *mnTracer) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Decode implements invoke.Exec.
func (t *mnTracer) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// begin starts tracing a set-up; t may be nil.
func (t *mnTracer) begin() {
	if t == nil {
		return
	}
	cpu, rq, _ := t.cg.read()
	t.mu.Lock()
	t.on, t.execs = true, nil
	t.self, t.cgCPU, t.cgRQ, t.idle = selfCPU(), cpu, rq, machineIdle()
	t.mu.Unlock()
}

// end stops tracing the set-up that began at start and took wall.
func (t *mnTracer) end(start time.Time, wall time.Duration) (mnSample, bool) {
	if t == nil {
		return mnSample{}, false
	}
	self, idle := selfCPU(), machineIdle()
	cpu, rq, ok := t.cg.read()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
	return mnSample{start: start, wall: wall, execs: t.execs, self: self - t.self,
		cgCPU: cpu - t.cgCPU, cgRQ: rq - t.cgRQ, cgroupRead: ok, idle: idle - t.idle}, true
}

// machineIdle returns the idle and iowait time of every CPU of the machine since boot.
func machineIdle() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, v := range f[4:6] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mnCgroup is a cgroup v2 this process moved into for the breakdown, whose CPU time and CPU
// pressure cover it and the plugins it runs, and nothing else of the machine.
type mnCgroup struct{ dir, back string }

// mnEnterCgroup moves this process into a new cgroup v2 under its own.
func mnEnterCgroup() (*mnCgroup, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			cur = p
		}
	}
	if cur == "" {
		return nil, errors.New("no cgroup v2 in /proc/self/cgroup")
	}
	var mount string
	for _, m := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(m, "cgroup.procs")); err == nil {
			if _, err := os.Stat(filepath.Join(m, cur, "cpu.pressure")); err == nil || cur != "/" {
				mount = m
				break
			}
		}
	}
	if mount == "" {
		return nil, errors.New("no cgroup v2 mount")
	}
	cg := &mnCgroup{dir: filepath.Join(mount, cur, fmt.Sprintf("cnibench-multinet-%d", os.Getpid())), back: filepath.Join(mount, cur)}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, errors.Join(err, os.Remove(cg.dir))
	}
	if _, _, ok := cg.read(); !ok {
		return nil, errors.Join(errors.New("cgroup has no cpu.stat or cpu.pressure"), cg.leave())
	}
	return cg, nil
}

// leave moves this process back and removes the cgroup; cg may be nil.
func (cg *mnCgroup) leave() error {
	if cg == nil {
		return nil
	}
	err := os.WriteFile(filepath.Join(cg.back, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	return errors.Join(err, os.Remove(cg.dir))
}

// read returns the cgroup's CPU time and the total of its CPU pressure "some".
func (cg *mnCgroup) read() (cpu, rq time.Duration, ok bool) {
	if cg == nil {
		return 0, 0, false
	}
	field := func(file, prefix, key string) (time.Duration, bool) {
		b, err := os.ReadFile(filepath.Join(cg.dir, file))
		if err != nil {
			return 0, false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			for _, f := range strings.Fields(line) {
				if v, found := strings.CutPrefix(f, key); found {
					us, err := strconv.ParseInt(v, 10, 64)
					return time.Duration(us) * time.Microsecond, err == nil
				}
			}
			if f := strings.Fields(line); len(f) == 2 && f[0] == strings.TrimSuffix(key, " ") {
				us, err := strconv.ParseInt(f[1], 10, 64)
				return time.Duration(us) * time.Microsecond, err == nil
			}
		}
		return 0, false
	}
	cpu, ok1 := field("cpu.stat", "usage_usec ", "usage_usec ")
	rq, ok2 := field("cpu.pressure", "some ", "total=")
	return cpu, rq, ok1 && ok2
}

// mnChain is one network's chain in a traced set-up.
type mnChain struct {
	first, last time.Time // first plugin forked, last plugin ended
	cpu         time.Duration
}

func (s mnSample) chains() map[string]*mnChain {
	out := map[string]*mnChain{}
	for _, e := range s.execs {
		c := out[e.ifName]
		if c == nil {
			c = &mnChain{first: e.t0, last: e.t2}
			out[e.ifName] = c
		}
		if e.t0.Before(c.first) {
			c.first = e.t0
		}
		if e.t2.After(c.last) {
			c.last = e.t2
		}
		c.cpu += e.cpu
	}
	return out
}

// ifNames returns the interfaces of the scenario's networks at once, in order.
func (sc *mnScenario) ifNames() []string {
	out := []string{"eth0"}
	next := 1
	for _, nw := range sc.nets[1:] {
		if nw.sel.Interface != "" {
			out = append(out, nw.sel.Interface)
			continue
		}
		out = append(out, "eth"+strconv.Itoa(next))
		next++
	}
	return out
}

// breakdownMarkdown says where the wall time of each variant's set-ups went: p50 of each
// quantity over the pods (means for the counts).
func (r *mnResult) breakdownMarkdown() string {
	n := len(r.sc.nets)
	names := r.names()
	cols := make([]string, 0, n+1)
	for i := range n {
		cols = append(cols, names[i]+" alone")
	}
	cols = append(cols, "at once")
	p50 := func(v int, f func(s mnSample) time.Duration) time.Duration {
		ds := make([]time.Duration, len(r.samples[v]))
		for i, s := range r.samples[v] {
			ds[i] = f(s)
		}
		return runner.Percentile(ds, 50)
	}
	mean := func(v int, f func(s mnSample) float64) float64 {
		var sum float64
		for _, s := range r.samples[v] {
			sum += f(s)
		}
		return sum / float64(max(1, len(r.samples[v])))
	}
	span := func(s mnSample) (time.Time, time.Time) {
		var a, b time.Time
		for _, e := range s.execs {
			if a.IsZero() || e.t0.Before(a) {
				a = e.t0
			}
			if e.t2.After(b) {
				b = e.t2
			}
		}
		return a, b
	}
	ifs := r.sc.ifNames()
	type row struct {
		name string
		cell func(v int) string
	}
	rows := []row{
		{"set-up wall", func(v int) string { return ms(p50(v, func(s mnSample) time.Duration { return s.wall })) }},
		{"chain wall, each network (fork of its first plugin to end of its last)", func(v int) string {
			if v < n {
				return ms(p50(v, func(s mnSample) time.Duration { c := s.chains()["eth0"]; return c.last.Sub(c.first) }))
			}
			parts := make([]string, len(ifs))
			for i, ifn := range ifs {
				parts[i] = names[i] + " " + ms(p50(v, func(s mnSample) time.Duration { c := s.chains()[ifn]; return c.last.Sub(c.first) }))
			}
			return strings.Join(parts, ", ")
		}},
		{"plugins running (first fork to last end)", func(v int) string {
			return ms(p50(v, func(s mnSample) time.Duration { a, b := span(s); return b.Sub(a) }))
		}},
		{"shim before the first fork (lock, record, loopback, goroutines)", func(v int) string {
			return ms(p50(v, func(s mnSample) time.Duration { a, _ := span(s); return a.Sub(s.start) }))
		}},
		{"shim after the last plugin ended (results, libcni cache, status)", func(v int) string {
			return ms(p50(v, func(s mnSample) time.Duration { _, b := span(s); return s.start.Add(s.wall).Sub(b) }))
		}},
		{"last chain's first fork after the first chain's", func(v int) string {
			if v < n {
				return "–"
			}
			return ms(p50(v, func(s mnSample) time.Duration {
				var firsts []time.Time
				for _, c := range s.chains() {
					firsts = append(firsts, c.first)
				}
				slices.SortFunc(firsts, func(a, b time.Time) int { return a.Compare(b) })
				return firsts[len(firsts)-1].Sub(firsts[0])
			}))
		}},
		{"fork + exec in the shim, mean per plugin run", func(v int) string {
			return fmt.Sprintf("%.2f ms", mean(v, func(s mnSample) float64 {
				var d time.Duration
				for _, e := range s.execs {
					d += e.t1.Sub(e.t0)
				}
				return float64(d.Microseconds()) / 1000 / float64(max(1, len(s.execs)))
			}))
		}},
		{"shim's CPU forking + execing, mean per plugin run", func(v int) string {
			return fmt.Sprintf("%.2f ms", mean(v, func(s mnSample) float64 {
				var d time.Duration
				for _, e := range s.execs {
					d += e.startCPU
				}
				return float64(d.Microseconds()) / 1000 / float64(max(1, len(s.execs)))
			}))
		}},
		{"plugins' CPU (wait4 rusage)", func(v int) string {
			return ms(p50(v, func(s mnSample) time.Duration {
				var d time.Duration
				for _, e := range s.execs {
					d += e.cpu
				}
				return d
			}))
		}},
		{"chains' wall − CPU, summed over the chains", func(v int) string {
			return ms(p50(v, func(s mnSample) time.Duration {
				var d time.Duration
				for _, c := range s.chains() {
					d += c.last.Sub(c.first) - c.cpu
				}
				return d
			}))
		}},
		{"plugins' voluntary / involuntary context switches", func(v int) string {
			return fmt.Sprintf("%.0f / %.0f", mean(v, func(s mnSample) float64 {
				var c int64
				for _, e := range s.execs {
					c += e.nvcsw
				}
				return float64(c)
			}), mean(v, func(s mnSample) float64 {
				var c int64
				for _, e := range s.execs {
					c += e.nivcsw
				}
				return float64(c)
			}))
		}},
		{"shim's CPU (this process)", func(v int) string { return ms(p50(v, func(s mnSample) time.Duration { return s.self })) }},
	}
	if len(r.samples[0]) > 0 && r.samples[0][0].cgroupRead {
		meanD := func(v int, f func(s mnSample) time.Duration) time.Duration {
			return time.Duration(mean(v, func(s mnSample) float64 { return float64(f(s)) }))
		}
		cores := time.Duration(runtime.NumCPU())
		rows = append(rows,
			row{"CPU of shim + plugins (cgroup cpu.stat)", func(v int) string { return ms(p50(v, func(s mnSample) time.Duration { return s.cgCPU })) }},
			row{"time some task of theirs waited for a CPU (cgroup cpu.pressure some)", func(v int) string {
				return ms(p50(v, func(s mnSample) time.Duration { return s.cgRQ }))
			}},
			row{fmt.Sprintf("mean wall × %d CPUs = shim + plugins", cores), func(v int) string {
				return fmt.Sprintf("%s = %s", ms(cores*meanD(v, func(s mnSample) time.Duration { return s.wall })), ms(meanD(v, func(s mnSample) time.Duration { return s.cgCPU })))
			}},
			row{"  + the machine's other processes", func(v int) string {
				return ms(meanD(v, func(s mnSample) time.Duration { return cores*s.wall - s.cgCPU - s.idle }))
			}},
			row{"  + idle (/proc/stat)", func(v int) string { return ms(meanD(v, func(s mnSample) time.Duration { return s.idle })) }})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Where the set-up's wall time goes (%s; p50 over the pods, context switches a mean):\n\n", r.sc.title)
	b.WriteString("| | " + strings.Join(cols, " | ") + " |\n|---|" + strings.Repeat("--:|", len(cols)) + "\n")
	for _, rw := range rows {
		cells := make([]string, len(cols))
		for v := range cols {
			cells[v] = rw.cell(v)
		}
		fmt.Fprintf(&b, "| %s | %s |\n", rw.name, strings.Join(cells, " | "))
	}
	b.WriteString("\n")
	return b.String()
}
