//go:build linux

package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// SettleBound bounds every wait for something to settle; it is a hang guard, never what a
// test asserts.
const SettleBound = 30 * time.Second

// Eventually polls cond until it returns "" and fails the test with its last answer if it
// never does within SettleBound.
func Eventually(t testing.TB, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(SettleBound)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never settled: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitUntil polls cond every 100 ms until it holds, for at most d, and reports whether it did.
func WaitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// Pause waits for d, or until ctx ends.
func Pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CallContext returns a context for one call that the test cancels after a generous bound.
// It is a cancel, never a deadline, so an error that wraps context.DeadlineExceeded (or a gRPC
// DeadlineExceeded) can only come from an operation timeout under test, and a hang that is
// never killed fails the test instead of blocking it.
func CallContext(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	timer := time.AfterFunc(2*time.Minute, cancel)
	return ctx, func() { timer.Stop(); cancel() }
}

// NewID returns a fresh 64-hex-digit sandbox ID.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StableGoroutines measures a goroutine baseline: what count reports once it has read the
// same for several reads in a row, so that goroutines just started (a plugin's background
// loops) are counted and ones still ending are not. It fails the test if the count never holds
// still within SettleBound. ProcessGoroutines counts this process's; Server.Goroutines a
// server's.
func StableGoroutines(t testing.TB, count func() (int, error)) int {
	t.Helper()
	const reads = 10
	deadline := time.Now().Add(SettleBound)
	n, same := -1, 0
	for {
		m, err := count()
		if err != nil {
			t.Fatal(err)
		}
		if m == n {
			same++
		} else {
			n, same = m, 1
		}
		if same == reads {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the goroutine count never held still for %d reads (last %d)", reads, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ProcessGoroutines counts this process's goroutines, for StableGoroutines.
func ProcessGoroutines() (int, error) { return runtime.NumGoroutine(), nil }

// GoroutinesSettle waits until the process runs at most baseline goroutines and fails the test
// with every goroutine's stack if it never does.
func GoroutinesSettle(t testing.TB, baseline int) int {
	t.Helper()
	deadline := time.Now().Add(SettleBound)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, want at most %d:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countAtMost is Eventually over a count that must fall to at most baseline.
func countAtMost(t testing.TB, what string, baseline int, count func() (int, error)) int {
	t.Helper()
	var n int
	Eventually(t, what, func() string {
		var err error
		if n, err = count(); err != nil {
			return err.Error()
		}
		if n > baseline {
			return fmt.Sprintf("%d goroutines, want at most %d", n, baseline)
		}
		return ""
	})
	return n
}
