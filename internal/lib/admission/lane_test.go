package admission

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitUntil polls cond until it holds. It asserts nothing about time; it gives
// up only shortly before the test binary's own deadline, so that a lane that
// never reaches cond fails with a message rather than a goroutine dump.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline, hasDeadline := t.Deadline()
	for i := 0; !cond(); i++ {
		if i < 100 {
			runtime.Gosched()
			continue
		}
		if hasDeadline && time.Until(deadline) < 10*time.Second {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// guardCtx returns a context for an Acquire that must not block. Its deadline
// only turns a hang into a failure; it is far beyond any wait that could pass.
func guardCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustAcquire acquires a slot that must be free now.
func mustAcquire(t *testing.T, l *Lane) func() {
	t.Helper()
	release, err := l.Acquire(guardCtx(t))
	if err != nil {
		t.Fatalf("Acquire on lane %q, which has room: %v", l.name, err)
	}
	return release
}

type result struct {
	id      int
	release func()
	err     error
}

// acquireAsync calls Acquire on its own goroutine and sends the outcome to out.
func acquireAsync(ctx context.Context, l *Lane, id int, out chan<- result) {
	go func() {
		release, err := l.Acquire(ctx)
		out <- result{id: id, release: release, err: err}
	}()
}

// enqueue starts an Acquire and waits until it is queued, so waiters enter the
// queue in a known order.
func enqueue(t *testing.T, ctx context.Context, l *Lane, id int, out chan<- result) {
	t.Helper()
	before := l.Stats().Queued
	acquireAsync(ctx, l, id, out)
	waitUntil(t, fmt.Sprintf("waiter %d is queued", id), func() bool { return l.Stats().Queued == before+1 })
}

func checkStats(t *testing.T, l *Lane, inFlight, queued int) {
	t.Helper()
	s := l.Stats()
	if s.InFlight != inFlight || s.Queued != queued {
		t.Fatalf("lane %q: %d in flight and %d queued, want %d and %d", s.Name, s.InFlight, s.Queued, inFlight, queued)
	}
}

func TestLaneNeverExceedsLimit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		limit       int
		goroutines  int
		iterations  int
		cancelEvery int // every n-th Acquire has its context cancelled concurrently; 0: none
	}{
		{name: "limit 1", limit: 1, goroutines: 32, iterations: 200},
		{name: "limit 2", limit: 2, goroutines: 32, iterations: 200},
		{name: "limit 3", limit: 3, goroutines: 64, iterations: 100},
		{name: "limit 7", limit: 7, goroutines: 64, iterations: 100},
		{name: "limit 2 with cancellations", limit: 2, goroutines: 32, iterations: 200, cancelEvery: 3},
		{name: "limit 1 with cancellations", limit: 1, goroutines: 32, iterations: 200, cancelEvery: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLane("stress", tc.limit, nil)
			guard := guardCtx(t) // a leaked slot fails the test instead of hanging it
			var cur, peak, ran, failed atomic.Int64
			var wg sync.WaitGroup
			for g := range tc.goroutines {
				wg.Go(func() {
					for i := range tc.iterations {
						ctx := guard
						if tc.cancelEvery > 0 && (g*tc.iterations+i)%tc.cancelEvery == 0 {
							c, cancel := context.WithCancel(ctx)
							go cancel()
							ctx = c
						}
						release, err := l.Acquire(ctx)
						if err != nil {
							if guard.Err() != nil {
								t.Errorf("Acquire blocked until the hang guard ended it: %v", err)
								return
							}
							if !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, context.Canceled) {
								t.Errorf("Acquire: %v, want ErrQueueTimeout and context.Canceled", err)
							}
							failed.Add(1)
							continue
						}
						n := cur.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						ran.Add(1)
						runtime.Gosched()
						cur.Add(-1)
						release()
					}
				})
			}
			wg.Wait()
			if p := peak.Load(); p > int64(tc.limit) {
				t.Errorf("%d ran at once, limit %d", p, tc.limit)
			}
			if tc.cancelEvery == 0 && failed.Load() != 0 {
				t.Errorf("%d Acquire calls failed without cancellation", failed.Load())
			}
			s := l.Stats()
			if s.InFlight != 0 || s.Queued != 0 {
				t.Errorf("after all released: %d in flight, %d queued; want 0 and 0", s.InFlight, s.Queued)
			}
			if s.Admitted != uint64(ran.Load()) || s.TimedOut != uint64(failed.Load()) {
				t.Errorf("Stats counts %d admitted and %d timed out; callers saw %d and %d",
					s.Admitted, s.TimedOut, ran.Load(), failed.Load())
			}
			if total := ran.Load() + failed.Load(); total != int64(tc.goroutines*tc.iterations) {
				t.Errorf("%d outcomes for %d calls", total, tc.goroutines*tc.iterations)
			}
		})
	}
}

func TestLaneFIFO(t *testing.T) {
	for _, tc := range []struct {
		name          string
		limit         int
		first, second int // waiters queued before and after the first grants
		cancel        []int
	}{
		{name: "limit 1", limit: 1, first: 8, second: 4},
		{name: "limit 2", limit: 2, first: 8, second: 4},
		{name: "limit 3", limit: 3, first: 5, second: 5},
		{name: "limit 1, cancelled waiters leave the order intact", limit: 1, first: 8, second: 4, cancel: []int{0, 3, 7, 10}},
		{name: "limit 2, cancelled waiters leave the order intact", limit: 2, first: 8, second: 4, cancel: []int{1, 2, 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLane("fifo", tc.limit, nil)
			var held []func()
			for range tc.limit {
				held = append(held, mustAcquire(t, l))
			}
			out := make(chan result)
			cancels := map[int]context.CancelFunc{}
			ctxFor := func(id int) context.Context {
				if !slices.Contains(tc.cancel, id) {
					return t.Context()
				}
				ctx, cancel := context.WithCancel(t.Context())
				t.Cleanup(cancel)
				cancels[id] = cancel
				return ctx
			}
			cancelled := map[int]bool{}
			queue := func(from, to int) {
				for id := from; id < to; id++ {
					enqueue(t, ctxFor(id), l, id, out)
				}
				// Cancel the chosen ones among these now that all are queued.
				for id := from; id < to; id++ {
					if cancel, ok := cancels[id]; ok {
						cancel()
						r := <-out
						if r.id != id || r.err == nil {
							t.Fatalf("cancelled waiter %d: got outcome of %d, err %v", id, r.id, r.err)
						}
						cancelled[id] = true
					}
				}
			}

			var order []int
			// grantOne frees one slot and receives the one waiter it admits.
			grantOne := func() {
				release := held[0]
				held = held[1:]
				release()
				r := <-out
				if r.err != nil {
					t.Fatalf("waiter %d: %v", r.id, r.err)
				}
				order = append(order, r.id)
				held = append(held, r.release)
			}

			queue(0, tc.first)
			survivors := func(from, to int) (n int) {
				for id := from; id < to; id++ {
					if !cancelled[id] {
						n++
					}
				}
				return n
			}
			for range survivors(0, tc.first) / 2 {
				grantOne()
			}
			queue(tc.first, tc.first+tc.second)
			for range survivors(0, tc.first+tc.second) - len(order) {
				grantOne()
			}

			var want []int
			for id := range tc.first + tc.second {
				if !cancelled[id] {
					want = append(want, id)
				}
			}
			if fmt.Sprint(order) != fmt.Sprint(want) {
				t.Errorf("grant order %v, want %v", order, want)
			}
			checkStats(t, l, tc.limit, 0)
			for _, release := range held {
				release()
			}
			checkStats(t, l, 0, 0)
		})
	}
}

func TestLaneNoBargingPastQueue(t *testing.T) {
	l := NewLane("add", 1, nil)
	holder := mustAcquire(t, l)
	out := make(chan result)
	enqueue(t, t.Context(), l, 0, out)
	holder() // admits waiter 0 under the lock, before anyone else can look
	first := <-out
	enqueue(t, t.Context(), l, 1, out)
	enqueue(t, t.Context(), l, 2, out)
	first.release()
	if r := <-out; r.id != 1 {
		t.Fatalf("admitted waiter %d after releasing, want 1", r.id)
	} else {
		r.release()
	}
	if r := <-out; r.id != 2 {
		t.Fatalf("admitted waiter %d, want 2", r.id)
	} else {
		r.release()
	}
	checkStats(t, l, 0, 0)
}

func TestLaneCancelledWaiterRunsNothing(t *testing.T) {
	expired := func(t *testing.T) context.Context {
		ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
		t.Cleanup(cancel)
		return ctx
	}
	cancelled := func(t *testing.T) context.Context {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		return ctx
	}
	for _, tc := range []struct {
		name string
		// queue: the lane is full, so the caller queues; else it has room.
		full bool
		// ctx returns the caller's context and, if not nil, a function that
		// ends it once the caller is queued.
		ctx     func(t *testing.T) (context.Context, func())
		wantErr error
	}{
		{
			name: "cancelled while queued", full: true,
			ctx: func(t *testing.T) (context.Context, func()) {
				ctx, cancel := context.WithCancel(t.Context())
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
		{
			name: "deadline while queued", full: true,
			ctx: func(t *testing.T) (context.Context, func()) {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
				t.Cleanup(cancel)
				return ctx, nil // the deadline ends it, whether queued yet or not
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "already cancelled, lane full", full: true,
			ctx:     func(t *testing.T) (context.Context, func()) { return cancelled(t), nil },
			wantErr: context.Canceled,
		},
		{
			name:    "already cancelled, lane has room",
			ctx:     func(t *testing.T) (context.Context, func()) { return cancelled(t), nil },
			wantErr: context.Canceled,
		},
		{
			name:    "already past deadline, lane has room",
			ctx:     func(t *testing.T) (context.Context, func()) { return expired(t), nil },
			wantErr: context.DeadlineExceeded,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLane("add", 1, nil)
			var holder func()
			if tc.full {
				holder = mustAcquire(t, l)
			}
			ctx, end := tc.ctx(t)
			var ran atomic.Bool
			done := make(chan error)
			go func() {
				release, err := l.Acquire(ctx)
				if err == nil {
					ran.Store(true) // the operation would run here
					release()
				} else if release != nil {
					err = fmt.Errorf("non-nil release with error: %w", err)
				}
				done <- err
			}()
			if end != nil {
				waitUntil(t, "the caller is queued", func() bool { return l.Stats().Queued == 1 })
				end()
			}
			err := <-done
			if ran.Load() {
				t.Fatal("operation ran although the caller's context ended before admission")
			}
			if !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Acquire: %v; want it to wrap ErrQueueTimeout and %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), `lane "add"`) || !strings.Contains(err.Error(), "waited") {
				t.Errorf("error %q does not name the lane and the wait", err)
			}
			want := 0
			if tc.full {
				want = 1
			}
			checkStats(t, l, want, 0)
			if s := l.Stats(); s.TimedOut != 1 || s.Admitted != uint64(want) {
				t.Errorf("Stats: %d timed out, %d admitted; want 1 and %d", s.TimedOut, s.Admitted, want)
			}
			if holder != nil {
				holder()
			}
			// The slot is free for the next caller.
			mustAcquire(t, l)()
			checkStats(t, l, 0, 0)
		})
	}
}

// TestLaneGrantCancelRace lets a release and a cancellation race many times:
// whichever wins, no slot may leak or be handed out twice.
func TestLaneGrantCancelRace(t *testing.T) {
	const iterations = 2000
	l := NewLane("race", 1, nil)
	out := make(chan result)
	var admitted, timedOut uint64
	for i := range iterations {
		holder := mustAcquire(t, l)
		admitted++
		ctx, cancel := context.WithCancel(t.Context())
		enqueue(t, ctx, l, i, out)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; holder() })
		wg.Go(func() { <-start; cancel() })
		close(start)
		r := <-out
		wg.Wait()
		if r.err == nil {
			admitted++
			if s := l.Stats(); s.InFlight != 1 {
				t.Fatalf("iteration %d: admitted waiter, but %d in flight", i, s.InFlight)
			}
			r.release()
		} else {
			timedOut++
			if !errors.Is(r.err, ErrQueueTimeout) || !errors.Is(r.err, context.Canceled) {
				t.Fatalf("iteration %d: %v", i, r.err)
			}
		}
		s := l.Stats()
		if s.InFlight != 0 || s.Queued != 0 {
			t.Fatalf("iteration %d: %d in flight, %d queued after everyone left", i, s.InFlight, s.Queued)
		}
	}
	if s := l.Stats(); s.Admitted != admitted || s.TimedOut != timedOut {
		t.Errorf("Stats: %d admitted, %d timed out; callers saw %d and %d", s.Admitted, s.TimedOut, admitted, timedOut)
	}
	t.Logf("%d admitted, %d timed out", admitted, timedOut)
}

// TestLaneGrantAfterCancel forces the interleaving the race test can only hope
// for: the waiter is granted after its context ended but before it could take
// the lock. It must hand the slot on and report the timeout.
func TestLaneGrantAfterCancel(t *testing.T) {
	l := NewLane("race", 1, nil)
	holder := mustAcquire(t, l)
	_ = holder // released by hand below, under the lock
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan result)
	enqueue(t, ctx, l, 0, out)
	next := make(chan result)
	enqueue(t, t.Context(), l, 1, next)

	l.mu.Lock()
	cancel()
	l.inFlight-- // what the holder's release does
	l.grantLocked()
	l.publishLocked()
	l.mu.Unlock()

	r := <-out
	if r.err == nil || !errors.Is(r.err, ErrQueueTimeout) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("waiter granted after its context ended: err %v, want the admission timeout", r.err)
	}
	// The slot it gave back went to the next in line.
	r = <-next
	if r.err != nil {
		t.Fatalf("next waiter: %v", r.err)
	}
	checkStats(t, l, 1, 0)
	r.release()
	checkStats(t, l, 0, 0)
	if s := l.Stats(); s.Admitted != 2 || s.TimedOut != 1 {
		t.Errorf("Stats: %d admitted, %d timed out; want 2 (holder, next) and 1", s.Admitted, s.TimedOut)
	}
}

func TestLaneSetLimit(t *testing.T) {
	t.Run("raising admits waiters in order", func(t *testing.T) {
		l := NewLane("add", 1, nil)
		held := []func(){mustAcquire(t, l)}
		out := make(chan result, 4)
		for id := range 4 {
			enqueue(t, t.Context(), l, id, out)
		}
		l.SetLimit(3)
		checkStats(t, l, 3, 2) // admitted synchronously, under the lock
		got := map[int]bool{}
		for range 2 {
			r := <-out
			got[r.id] = true
			held = append(held, r.release)
		}
		if !got[0] || !got[1] {
			t.Fatalf("raising the limit admitted %v, want waiters 0 and 1", got)
		}
		l.SetLimit(0) // unbounded
		checkStats(t, l, 5, 0)
		for range 2 {
			held = append(held, (<-out).release)
		}
		if s := l.Stats(); s.Limit != 0 {
			t.Errorf("Limit %d after SetLimit(0), want 0", s.Limit)
		}
		for _, release := range held {
			release()
		}
		checkStats(t, l, 0, 0)
	})
	t.Run("lowering keeps callers in flight", func(t *testing.T) {
		l := NewLane("add", 3, nil)
		held := []func(){mustAcquire(t, l), mustAcquire(t, l), mustAcquire(t, l)}
		l.SetLimit(1)
		checkStats(t, l, 3, 0)
		out := make(chan result)
		enqueue(t, t.Context(), l, 0, out)
		held[0]()
		checkStats(t, l, 2, 1)
		held[1]()
		checkStats(t, l, 1, 1)
		held[2]()
		checkStats(t, l, 1, 0) // the waiter took the only slot
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		enqueue(t, t.Context(), l, 1, out) // still bounded at 1
		r.release()
		(<-out).release()
		checkStats(t, l, 0, 0)
	})
	t.Run("negative means unbounded", func(t *testing.T) {
		l := NewLane("add", 1, nil)
		l.SetLimit(-5)
		if s := l.Stats(); s.Limit != 0 {
			t.Errorf("Limit %d after SetLimit(-5), want 0", s.Limit)
		}
		a, b := mustAcquire(t, l), mustAcquire(t, l)
		a()
		b()
	})
}

func TestLaneUnbounded(t *testing.T) {
	for _, limit := range []int{0, -1} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			l := NewLane("del", limit, nil)
			const n = 1000
			var held []func()
			for range n {
				held = append(held, mustAcquire(t, l))
			}
			checkStats(t, l, n, 0)
			if s := l.Stats(); s.Limit != 0 || s.Admitted != n {
				t.Errorf("Stats %+v, want Limit 0 and %d admitted", s, n)
			}
			for _, release := range held {
				release()
			}
			checkStats(t, l, 0, 0)
		})
	}
}

func TestReleaseIdempotent(t *testing.T) {
	t.Run("twice frees one slot", func(t *testing.T) {
		l := NewLane("add", 1, nil)
		holder := mustAcquire(t, l)
		out := make(chan result)
		enqueue(t, t.Context(), l, 0, out)
		holder()
		r := <-out // waiter 0 holds the only slot
		holder()   // must not free waiter 0's slot
		checkStats(t, l, 1, 0)
		enqueue(t, t.Context(), l, 1, out) // so the next caller queues
		r.release()
		r.release()
		r = <-out
		checkStats(t, l, 1, 0)
		r.release()
		checkStats(t, l, 0, 0)
	})
	t.Run("concurrent calls free one slot", func(t *testing.T) {
		l := NewLane("add", 2, nil)
		other := mustAcquire(t, l)
		release := mustAcquire(t, l)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(release)
		}
		wg.Wait()
		checkStats(t, l, 1, 0)
		other()
		checkStats(t, l, 0, 0)
	})
}

// BenchmarkAcquire measures one Acquire and release, and the same with a
// buffered-channel semaphore (neither FIFO nor counting) as the baseline
// measured in the same run: x-chan is lane time over channel time.
func BenchmarkAcquire(b *testing.B) {
	for _, bc := range []struct {
		name     string
		limit    int
		parallel bool
	}{
		{name: "uncontended", limit: 1},
		{name: "uncontended unbounded", limit: 0},
		{name: "contended limit 1", limit: 1, parallel: true},
		{name: "contended limit GOMAXPROCS", limit: runtime.GOMAXPROCS(0), parallel: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			l := NewLane("bench", bc.limit, nil)
			size := bc.limit
			if size <= 0 {
				size = 1 << 20
			}
			sem := make(chan struct{}, size)
			chanOp := func() {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				<-sem
			}
			laneOp := func() {
				release, err := l.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
			run := func(op func()) time.Duration {
				start := time.Now()
				if bc.parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							op()
						}
					})
				} else {
					for range b.N {
						op()
					}
				}
				return time.Since(start)
			}
			b.ReportAllocs()
			base := run(chanOp)
			b.ResetTimer()
			lane := run(laneOp)
			b.StopTimer()
			b.ReportMetric(float64(lane)/float64(base), "x-chan")
		})
	}
}

// TestTryAcquire: a slot is taken at once only when one is free and nobody queues.
func TestTryAcquire(t *testing.T) {
	l := NewLane("add", 1, nil)
	release, ok := l.TryAcquire()
	if !ok {
		t.Fatal("TryAcquire on an idle lane failed")
	}
	checkStats(t, l, 1, 0)
	if _, ok := l.TryAcquire(); ok {
		t.Fatal("TryAcquire on a full lane took a slot")
	}
	out := make(chan result)
	enqueue(t, t.Context(), l, 0, out)
	if _, ok := l.TryAcquire(); ok {
		t.Fatal("TryAcquire took a slot with a caller queued")
	}
	release()
	r := <-out // the queued caller got the slot
	r.release()
	checkStats(t, l, 0, 0)
	release, ok = l.TryAcquire()
	if !ok {
		t.Fatal("TryAcquire after the lane emptied failed")
	}
	release()
	if st := l.Stats(); st.Admitted != 3 || st.TimedOut != 0 {
		t.Fatalf("stats %+v; want 3 admitted, none timed out", st)
	}
}
