//go:build linux

package runner

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// helperEnv makes the test binary act as a misbehaving worker (see TestMain).
const helperEnv = "CNIBENCH_TEST_WORKER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "panic":
		// An implementation that panics in a set-up, called as the worker calls it.
		job := &Job{Pods: make([]impls.PodSpec, 2), Parallelism: 2, OpTimeout: time.Minute}
		batch(context.Background(), job, func(context.Context, *impls.PodSpec) error {
			panic("implementation exploded")
		})
		os.Exit(0)
	case "exit":
		os.Stderr.WriteString("worker: something failed\n")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// TestWorkerFailureFailsRun checks that a worker that panics or exits non-zero fails its run,
// and that a panic is in the error.
func TestWorkerFailureFailsRun(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode    string
		want    []string
		notWant string
		note    string // the report's one-line reason
	}{
		{"panic", []string{"worker cnishim: exit status 2", "panic: implementation exploded", "goroutine "}, "",
			"worker cnishim: exit status 2; panic: implementation exploded"},
		{"exit", []string{"worker cnishim: exit status 3"}, "panic", "worker cnishim: exit status 3"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			t.Setenv(helperEnv, c.mode)
			res, err := startWorker(t.Context(), &Options{Worker: []string{self}, Stderr: io.Discard}, &Job{Impl: impls.Cnishim})
			if err == nil {
				t.Fatalf("worker that failed (%s) gave a result: %+v", c.mode, res)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if c.notWant != "" && strings.Contains(err.Error(), c.notWant) {
				t.Errorf("error has %q:\n%v", c.notWant, err)
			}
			// The report's row of the run says it failed, and why, on one line.
			if note := failureNote(err); !strings.HasPrefix(note, c.note) || strings.Contains(note, "\n") {
				t.Errorf("failureNote = %q, want one line starting %q", note, c.note)
			}
		})
	}
}
