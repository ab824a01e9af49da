//go:build linux

// Package runner runs the benchmark: each measurement runs in a fresh worker process (so
// its CPU figures, its plugins' CPU and its peak RSS belong to one implementation alone),
// interleaved across implementations and rounds, with the pods' namespaces made outside the
// timed region and a leak check after every run.
package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// Job is what the parent asks a worker to do: set the pods up with the implementation,
// Parallelism callers at once, then tear them all down the same way.
type Job struct {
	Impl        string          `json:"impl"`
	Config      impls.Config    `json:"config"`
	Pods        []impls.PodSpec `json:"pods"`
	Parallelism int             `json:"parallelism"`
	OpTimeout   time.Duration   `json:"opTimeout"`
}

// Phase is one batch (all set-ups, or all teardowns) as the callers saw it.
type Phase struct {
	// Latencies holds each pod's call duration, queueing inside the implementation included,
	// in the order the calls finished.
	Latencies []time.Duration `json:"latencies"`
	// Wall is the time from the first call to the last return.
	Wall time.Duration `json:"wall"`
	// CPU is the worker's own CPU time and its children's (the plugins and all they ran).
	CPU host.Usage `json:"cpu"`
	// Failed counts failed calls; Errors holds the first few.
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`
}

// Result is a worker's answer.
type Result struct {
	Setup    Phase `json:"setup"`
	Teardown Phase `json:"teardown"`
	// RSSReadyKiB is the worker's RSS once the implementation was ready, before the first
	// set-up; PeakRSSKiB is its peak RSS from then to the end.
	RSSReadyKiB int64 `json:"rssReadyKiB"`
	PeakRSSKiB  int64 `json:"peakRSSKiB"`
	// InitError is set when the implementation could not be built; nothing ran.
	InitError string `json:"initError,omitempty"`
}

const maxErrors = 5

// Work runs the job read from in and writes its Result to out, as JSON. It is the worker
// process's main.
func Work(ctx context.Context, in io.Reader, out io.Writer) error {
	var job Job
	if err := json.NewDecoder(in).Decode(&job); err != nil {
		return fmt.Errorf("worker: read job: %w", err)
	}
	res := run(ctx, &job)
	return json.NewEncoder(out).Encode(res)
}

func run(ctx context.Context, job *Job) *Result {
	var res Result
	impl, err := impls.New(ctx, job.Impl, job.Config)
	if err != nil {
		res.InitError = err.Error()
		return &res
	}
	defer impl.Close()

	runtime.GC()
	debug.FreeOSMemory()
	_ = host.ResetPeakMemory()
	res.RSSReadyKiB, _, _ = host.Memory()

	res.Setup = batch(ctx, job, impl.SetUp)
	// Teardown runs for every pod, also those whose set-up failed: it must be idempotent,
	// and it is what leaves the machine clean.
	res.Teardown = batch(ctx, job, impl.TearDown)
	_, res.PeakRSSKiB, _ = host.Memory()
	return &res
}

func batch(ctx context.Context, job *Job, op func(context.Context, *impls.PodSpec) error) Phase {
	var (
		ph   Phase
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan int)
	)
	ph.Latencies = make([]time.Duration, 0, len(job.Pods))
	u0, _ := host.ReadUsage()
	start := time.Now()
	for range max(1, job.Parallelism) {
		wg.Go(func() {
			for i := range next {
				opCtx, cancel := context.WithTimeout(ctx, job.OpTimeout)
				t := time.Now()
				err := op(opCtx, &job.Pods[i])
				d := time.Since(t)
				cancel()
				mu.Lock()
				ph.Latencies = append(ph.Latencies, d)
				if err != nil {
					ph.Failed++
					if len(ph.Errors) < maxErrors {
						ph.Errors = append(ph.Errors, err.Error())
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range job.Pods {
		next <- i
	}
	close(next)
	wg.Wait()
	ph.Wall = time.Since(start)
	u1, _ := host.ReadUsage()
	ph.CPU = u1.Sub(u0)
	return ph
}
