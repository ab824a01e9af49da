package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrQueueTimeout is wrapped by the error [Lane.Acquire] returns when the
// caller's context ends before the caller is admitted. The same error also
// wraps the context's error ([context.DeadlineExceeded] or
// [context.Canceled]), so callers can test for either with [errors.Is].
var ErrQueueTimeout = errors.New("timed out waiting for admission")

// Stats is a point-in-time view of a [Lane], taken under the lane's lock, so
// its fields agree with each other.
type Stats struct {
	// Name is the lane's name, as given to NewLane.
	Name string
	// Limit is the current bound; 0 means unbounded.
	Limit int
	// InFlight is how many callers hold a slot (admitted, not yet released).
	// It may exceed Limit for a while after SetLimit lowered the bound.
	InFlight int
	// Queued is how many callers are waiting for a slot.
	Queued int
	// Admitted counts successful Acquire calls since the lane was created.
	Admitted uint64
	// TimedOut counts Acquire calls that returned an error because the
	// caller's context ended first.
	TimedOut uint64
	// TotalWait is the sum, over admitted callers, of the time each spent
	// queued. TotalWait / Admitted is the mean wait for admission.
	TotalWait time.Duration
}

// Lane bounds how many operations of one kind run at once. Callers are
// admitted in the order they called [Lane.Acquire] (FIFO): a newcomer never
// overtakes a queued caller, even when a slot is free at the moment it
// arrives, because that slot is already promised to the head of the queue.
//
// A Lane is safe for concurrent use. Its methods never block except Acquire,
// which blocks only while the caller is queued. It owns no goroutines; a queued
// caller waits on its own goroutine.
type Lane struct {
	name    string
	metrics *laneMetrics // nil when the lane has no metrics

	// mu guards every field below. It is held only for bookkeeping, never while
	// a caller waits or runs. A waiter is granted (removed from the queue,
	// counted in flight, its ready channel closed) only with mu held, so under
	// mu a waiter is either queued or granted, never both nor neither.
	// Invariant whenever mu is free: if the queue is not empty, there is no
	// room (every change that makes room calls grantLocked).
	mu         sync.Mutex
	limit      int // <= 0: unbounded; stored as 0
	inFlight   int
	head, tail *waiter // FIFO of queued callers, head is admitted first
	queued     int
	admitted   uint64
	timedOut   uint64
	totalWait  time.Duration

	// queuing receives a value, if it has room, whenever a caller starts to queue.
	queuing chan struct{}
}

// waiter is one queued caller of Acquire.
type waiter struct {
	ready      chan struct{} // closed, under Lane.mu, when the waiter is granted
	prev, next *waiter       // queue links, guarded by Lane.mu
	start      time.Time     // when the waiter was queued
	granted    bool          // guarded by Lane.mu
	// waited is how long the waiter was queued, set when it is granted. The
	// waiter may read it without the lock once ready is closed.
	waited time.Duration
}

// NewLane returns a lane named name (used in errors, [Stats] and the "lane"
// metric label) that admits at most limit callers at once. A limit <= 0 makes
// the lane unbounded: Acquire never waits, but the lane still counts callers in
// flight. If m is not nil the lane reports to it; lane names must be unique
// among the lanes that share one [Metrics].
func NewLane(name string, limit int, m *Metrics) *Lane {
	l := &Lane{name: name, limit: normLimit(limit), queuing: make(chan struct{}, 1)}
	if m != nil {
		l.metrics = m.forLane(name)
	}
	l.publishLocked() // no other goroutine can see l yet
	return l
}

func normLimit(n int) int {
	if n < 0 {
		return 0
	}
	return n
}

// Acquire waits until the caller may run one operation in this lane: at once
// if a slot is free and nobody is queued, else after every earlier caller has
// been admitted and a slot has been released.
//
// On success the caller runs its operation and then calls release; release
// frees the slot for the next caller. Calling release more than once is
// harmless: only the first call frees the slot. Not calling it leaks the slot.
// (Being idempotent, release carries state of its own: each admission
// allocates two small objects, about 28 bytes.)
//
// If ctx ends first, including when it has already ended on entry, Acquire
// returns a nil release and an error that names the lane and how long the
// caller waited, and wraps both [ErrQueueTimeout] and ctx.Err(). The caller
// then holds no slot and must not run its operation. When admission and the
// end of ctx race, ctx wins: the slot passes to the next caller.
func (l *Lane) Acquire(ctx context.Context) (release func(), err error) {
	done := ctx.Done()
	l.mu.Lock()
	if done != nil {
		select {
		case <-done:
			err := l.failLocked(ctx, 0)
			l.mu.Unlock()
			return nil, err
		default:
		}
	}
	if l.head == nil && l.roomLocked() {
		// Fast path: nothing queued and a slot is free.
		l.inFlight++
		l.admitted++
		l.publishLocked()
		l.mu.Unlock()
		l.metrics.observeWait(0)
		return l.releaser(), nil
	}

	w := &waiter{ready: make(chan struct{}), start: time.Now()}
	l.pushLocked(w)
	l.publishLocked()
	l.mu.Unlock()
	select {
	case l.queuing <- struct{}{}:
	default:
	}

	select {
	case <-w.ready:
		select {
		case <-done:
			// Admitted while ctx ended: honour ctx, hand the slot on.
			l.mu.Lock()
			err := l.giveBackLocked(ctx, w)
			l.mu.Unlock()
			return nil, err
		default:
		}
		l.metrics.observeWait(w.waited)
		return l.releaser(), nil
	case <-done:
		l.mu.Lock()
		var err error
		if w.granted {
			// Granted between ctx ending and us taking the lock.
			err = l.giveBackLocked(ctx, w)
		} else {
			// Leaving the queue frees no slot, so nobody else can go now.
			l.removeLocked(w)
			err = l.failLocked(ctx, time.Since(w.start))
			l.publishLocked()
		}
		l.mu.Unlock()
		return nil, err
	}
}

// TryAcquire takes a slot at once if one is free and nobody is queued, as Acquire would
// without waiting, and reports whether it did. On success the caller runs its operation and
// then calls release, as after Acquire.
func (l *Lane) TryAcquire() (release func(), ok bool) {
	l.mu.Lock()
	if l.head != nil || !l.roomLocked() {
		l.mu.Unlock()
		return nil, false
	}
	l.inFlight++
	l.admitted++
	l.publishLocked()
	l.mu.Unlock()
	l.metrics.observeWait(0)
	return l.releaser(), true
}

// giveBackLocked undoes the grant of w, whose caller's context ended, passes
// the slot on and returns the caller's error.
func (l *Lane) giveBackLocked(ctx context.Context, w *waiter) error {
	l.inFlight--
	l.admitted--
	l.totalWait -= w.waited
	err := l.failLocked(ctx, time.Since(w.start))
	l.grantLocked()
	l.publishLocked()
	return err
}

// failLocked counts a caller whose context ended before admission and returns
// its error. waited is how long it was queued.
func (l *Lane) failLocked(ctx context.Context, waited time.Duration) error {
	l.timedOut++
	l.metrics.countTimeout()
	limit := "unbounded"
	if l.limit > 0 {
		limit = fmt.Sprintf("limit %d", l.limit)
	}
	return fmt.Errorf("admission lane %q: waited %s with %d in flight (%s) and %d queued: %w: %w",
		l.name, waited.Round(time.Millisecond), l.inFlight, limit, l.queued, ErrQueueTimeout, ctx.Err())
}

// releaser returns the release function of one admission.
func (l *Lane) releaser() func() {
	var released atomic.Bool
	return func() {
		if released.CompareAndSwap(false, true) {
			l.release()
		}
	}
}

func (l *Lane) release() {
	l.mu.Lock()
	l.inFlight--
	l.grantLocked()
	l.publishLocked()
	l.mu.Unlock()
}

// SetLimit changes the lane's bound; n <= 0 makes it unbounded. Raising the
// bound admits queued callers at once, in order, up to the new bound. Lowering
// it affects no caller in flight: new callers wait until the number in flight
// has dropped below the new bound.
func (l *Lane) SetLimit(n int) {
	l.mu.Lock()
	l.limit = normLimit(n)
	l.grantLocked()
	l.publishLocked()
	l.mu.Unlock()
}

// Queuing returns a channel that receives a value after a caller starts to queue (several
// callers starting to queue may give one value), so that a controller of the lane's bound
// needs to look at it only while callers queue.
func (l *Lane) Queuing() <-chan struct{} { return l.queuing }

// Stats returns a point-in-time view of the lane.
func (l *Lane) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		Name:      l.name,
		Limit:     l.limit,
		InFlight:  l.inFlight,
		Queued:    l.queued,
		Admitted:  l.admitted,
		TimedOut:  l.timedOut,
		TotalWait: l.totalWait,
	}
}

// roomLocked reports whether one more caller may be in flight.
func (l *Lane) roomLocked() bool {
	return l.limit <= 0 || l.inFlight < l.limit
}

// grantLocked admits queued callers, head first, while there is room.
func (l *Lane) grantLocked() {
	var now time.Time
	for l.head != nil && l.roomLocked() {
		w := l.head
		l.removeLocked(w)
		if now.IsZero() {
			now = time.Now()
		}
		w.granted = true
		w.waited = now.Sub(w.start)
		l.inFlight++
		l.admitted++
		l.totalWait += w.waited
		close(w.ready)
	}
}

func (l *Lane) pushLocked(w *waiter) {
	w.prev = l.tail
	if l.tail == nil {
		l.head = w
	} else {
		l.tail.next = w
	}
	l.tail = w
	l.queued++
}

func (l *Lane) removeLocked(w *waiter) {
	if w.prev == nil {
		l.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		l.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
	l.queued--
}

// publishLocked copies the lane's state to its gauges.
func (l *Lane) publishLocked() {
	l.metrics.publish(l.limit, l.inFlight, l.queued)
}
