// Package keylock serializes operations per key (a pod sandbox ID) while letting operations on
// different keys run in parallel. Both the Plugin of pkg/cninetwork and the CRI runtime use it.
package keylock

import (
	"context"
	"fmt"
	"sync"
)

// Map holds one lock per key, created on first use and dropped when no operation holds or waits
// for it, so it holds only the keys in use. The zero Map is ready to use; a Map must not be
// copied after first use.
type Map struct {
	// mu guards m and every entry's refs. It is held only to look up, count and delete
	// entries, never while an operation waits for or holds a key's lock.
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	// token holds one value when the lock is free; taking it locks, putting it back unlocks.
	// A channel rather than a sync.Mutex, so a waiter can give up when its context ends.
	token chan struct{}
	// refs counts the operations holding or waiting for the lock; guarded by Map.mu.
	refs int
}

// ref returns key's entry with its reference count raised.
func (l *Map) ref(key string) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*entry)
	}
	e := l.m[key]
	if e == nil {
		e = &entry{token: make(chan struct{}, 1)}
		e.token <- struct{}{}
		l.m[key] = e
	}
	e.refs++
	return e
}

// unref drops a reference taken by ref, deleting the entry with the last one.
func (l *Map) unref(key string, e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
}

// Lock blocks until it holds key's lock, and returns the function that releases it, or returns
// an error wrapping ctx's cause if ctx ends first. The error names key as a sandbox.
func (l *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	e := l.ref(key)
	select {
	case <-e.token:
		return func() { e.token <- struct{}{}; l.unref(key, e) }, nil
	case <-ctx.Done():
		l.unref(key, e)
		return nil, fmt.Errorf("waiting for another operation on sandbox %s: %w", key, context.Cause(ctx))
	}
}

// TryLock takes key's lock if no operation holds or waits for it.
func (l *Map) TryLock(key string) (unlock func(), ok bool) {
	l.mu.Lock()
	busy := l.m[key] != nil
	l.mu.Unlock()
	if busy {
		return nil, false
	}
	e := l.ref(key)
	select {
	case <-e.token:
		return func() { e.token <- struct{}{}; l.unref(key, e) }, true
	default:
		l.unref(key, e)
		return nil, false
	}
}

// Busy returns the keys with an operation holding or waiting for their lock.
func (l *Map) Busy() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.m))
	for key := range l.m {
		out[key] = true
	}
	return out
}
