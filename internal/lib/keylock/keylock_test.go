package keylock

import (
	"context"
	"errors"
	"testing"
)

func TestMap(t *testing.T) {
	var l Map
	unlockA, err := l.Lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another sandbox is independent.
	unlockB, err := l.Lock(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.TryLock("a"); ok {
		t.Fatal("TryLock took a held lock")
	}
	if got := l.Busy(); !got["a"] || !got["b"] || len(got) != 2 {
		t.Fatalf("busy = %v", got)
	}
	// A waiter gives up when its context ends, and leaves no entry behind.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Lock(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with cancelled ctx = %v; want context.Canceled", err)
	}
	unlockB()
	// A queued waiter gets the lock when it is released.
	got := make(chan func(), 1)
	go func() {
		u, err := l.Lock(t.Context(), "a")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	unlockA()
	(<-got)()
	if n := len(l.Busy()); n != 0 {
		t.Fatalf("%d entries left after every unlock", n)
	}
	u, ok := l.TryLock("a")
	if !ok {
		t.Fatal("TryLock failed on a free lock")
	}
	u()
}
