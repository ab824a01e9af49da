package cninetwork

import (
	"context"
	"fmt"
	"sync"
)

// sandboxLocks serializes the operations on one pod sandbox while letting operations on
// different sandboxes run in parallel: one lock per sandbox ID, created on first use and
// dropped when no operation holds or waits for it.
type sandboxLocks struct {
	// mu guards m and every entry's refs. It is held only to look up, count and delete
	// entries, never while an operation waits for or holds a sandbox's lock.
	mu sync.Mutex
	m  map[string]*sandboxLock
}

type sandboxLock struct {
	// token holds one value when the lock is free; taking it locks, putting it back unlocks.
	// A channel rather than a sync.Mutex, so a waiter can give up when its context ends.
	token chan struct{}
	// refs counts the operations holding or waiting for the lock; guarded by sandboxLocks.mu.
	refs int
}

// ref returns id's lock with its reference count raised.
func (l *sandboxLocks) ref(id string) *sandboxLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*sandboxLock)
	}
	s := l.m[id]
	if s == nil {
		s = &sandboxLock{token: make(chan struct{}, 1)}
		s.token <- struct{}{}
		l.m[id] = s
	}
	s.refs++
	return s
}

// unref drops a reference taken by ref, deleting the entry with the last one.
func (l *sandboxLocks) unref(id string, s *sandboxLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		delete(l.m, id)
	}
}

// lock blocks until it holds id's lock, and returns the function that releases it, or returns
// an error wrapping ctx's error if ctx ends first.
func (l *sandboxLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	s := l.ref(id)
	select {
	case <-s.token:
		return func() { s.token <- struct{}{}; l.unref(id, s) }, nil
	case <-ctx.Done():
		l.unref(id, s)
		return nil, fmt.Errorf("waiting for another operation on sandbox %s: %w", id, context.Cause(ctx))
	}
}

// tryLock takes id's lock if no operation holds or waits for it.
func (l *sandboxLocks) tryLock(id string) (unlock func(), ok bool) {
	l.mu.Lock()
	busy := l.m[id] != nil
	l.mu.Unlock()
	if busy {
		return nil, false
	}
	s := l.ref(id)
	select {
	case <-s.token:
		return func() { s.token <- struct{}{}; l.unref(id, s) }, true
	default:
		l.unref(id, s)
		return nil, false
	}
}

// busy returns the IDs of the sandboxes with an operation holding or waiting for their lock.
func (l *sandboxLocks) busy() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.m))
	for id := range l.m {
		out[id] = true
	}
	return out
}
