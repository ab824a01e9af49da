package cninetwork

import (
	"context"
	"fmt"
	"sync"
)

// gcGate keeps GC's plugin phase apart from ADD chains: a CNI GC releases whatever the valid
// attachments it is given do not hold, so an ADD whose attachment is not yet recorded must not
// run during it. Set-ups share the gate; GC holds it alone. A GC waiting for the gate keeps
// new set-ups out, so a steady stream of them cannot starve it; it waits for the set-ups that
// entered before it asked, those still queued for an ADD slot included. A set-up enters the
// gate before it takes any slot, so none holds a slot while it waits behind a GC: the chains a
// GC waits for can always be admitted. Both sides give up when their context ends, so no
// set-up waits past its deadline behind a GC.
type gcGate struct {
	// mu guards the fields below.
	mu      sync.Mutex
	readers int  // set-ups holding the gate
	writer  bool // a GC holds the gate or waits for the readers to leave
	// changed is closed, and replaced, whenever readers drops to 0 or writer is cleared.
	changed chan struct{}
}

// wait releases mu until the gate changes or ctx ends; mu is held again on return.
func (g *gcGate) wait(ctx context.Context) error {
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	ch := g.changed
	g.mu.Unlock()
	defer g.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// broadcast wakes every waiter. Called with mu held.
func (g *gcGate) broadcast() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// enter lets a set-up in once no GC holds or waits for the gate.
func (g *gcGate) enter(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.writer {
		if err := g.wait(ctx); err != nil {
			return fmt.Errorf("waiting for a CNI GC to finish: %w", err)
		}
	}
	g.readers++
	return nil
}

// leave ends a set-up's hold.
func (g *gcGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.readers--
	if g.readers == 0 {
		g.broadcast()
	}
}

// lock takes the gate for a GC once no other GC holds it and every set-up in it has left.
func (g *gcGate) lock(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.writer {
		if err := g.wait(ctx); err != nil {
			return fmt.Errorf("waiting for another CNI GC: %w", err)
		}
	}
	g.writer = true
	for g.readers > 0 {
		if err := g.wait(ctx); err != nil {
			g.writer = false
			g.broadcast()
			return fmt.Errorf("waiting for %d pod set-ups to finish: %w", g.readers, err)
		}
	}
	return nil
}

// unlock releases a GC's hold.
func (g *gcGate) unlock() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writer = false
	g.broadcast()
}
