//go:build linux

package criserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"k8s.io/klog/v2"
)

// Reasons recorded for sandboxes Recover stops.
const (
	ReasonSetUpCutOff = "set-up was cut off by a restart of cnishim; its network was rolled back"
	ReasonNetNSLost   = "network namespace was lost (node restart?); its network was torn down"
	ReasonStopCutOff  = "its stop did not finish (cut off by a restart of cnishim, or failed); its network was torn down"
	// ReasonRollbackFailed starts the reason of a sandbox whose failed set-up could not be
	// rolled back.
	ReasonRollbackFailed = "rollback failed"
	// ReasonSetUpReleased is the reason of a sandbox whose failed set-up was released later.
	ReasonSetUpReleased = "set-up did not complete; its network was released"
)

// Recover reconciles the records with the host after a start, before the server takes calls:
//
//   - a sandbox whose set-up was cut off by a crash (record still "creating") has its network
//     torn down and its namespace removed, and is kept NOTREADY with ReasonSetUpCutOff, so that
//     crictl lists it and the kubelet or operator removes it as any stopped sandbox;
//   - a ready sandbox whose namespace is no longer mounted (the node rebooted) is torn down the
//     same way, with ReasonNetNSLost;
//   - a sandbox whose stop did not finish (record "stopping") is torn down the same way, with
//     ReasonStopCutOff;
//   - namespace files under Config.NetNSDir that no sandbox record names are removed;
//   - then one CNI GC pass runs (see GC).
//
// Recover keeps going past a failure and returns all failures joined; a sandbox whose teardown
// failed keeps its state and its namespace (a cut-off set-up stays "creating", NOTREADY to
// clients; a ready sandbox whose namespace is gone stays READY), stays in GC's valid set, and is
// torn down again by StopPodSandbox or RemovePodSandbox.
func (s *Server) Recover(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	type stop struct {
		rec    sandboxstore.Record
		reason string
		done   string // the log message once stopped
	}
	var (
		errs  []error
		stops []stop
	)
	owned := map[string]bool{}
	for _, rec := range s.cfg.Store.List() {
		if rec.NetNSPath != "" {
			owned[filepath.Base(rec.NetNSPath)] = true
		}
		switch rec.State {
		case sandboxstore.StateCreating:
			reason := ReasonSetUpCutOff
			if strings.HasPrefix(rec.Reason, ReasonRollbackFailed) {
				reason = ReasonSetUpReleased // its set-up failed, not cut off
			}
			stops = append(stops, stop{rec, reason, "Rolled back sandbox set-up cut off by a restart"})
		case sandboxstore.StateStopping:
			stops = append(stops, stop{rec, ReasonStopCutOff, "Finished sandbox teardown cut off by a restart"})
		case sandboxstore.StateReady:
			if rec.HostNetwork {
				continue
			}
			if ok, _ := netns.IsNetNS(rec.NetNSPath); ok {
				continue
			}
			// The namespace is gone: tear down with no netns, as the CNI spec allows.
			stops = append(stops, stop{rec, ReasonNetNSLost, "Tore down sandbox whose network namespace was lost"})
		case sandboxstore.StateNotReady:
			if rec.NetNSPath != "" {
				if err := netns.Remove(rec.NetNSPath); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}

	// The server does not listen until this is done, so the teardowns run side by side: a
	// crash amid a pod-start storm leaves a few hundred cut-off set-ups, and one after the
	// other they would keep the runtime down for a minute. They all start at once: the
	// network plugin admits their chains within its DEL bound, and time queued never eats a
	// chain's budget.
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, st := range stops {
		wg.Go(func() {
			logger := logger.WithValues("podSandboxID", st.rec.ID, "pod", klog.KRef(st.rec.Config.GetMetadata().GetNamespace(), st.rec.Config.GetMetadata().GetName()))
			if err := s.recoverStop(ctx, st.rec, st.reason); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			logger.Info(st.done)
		})
	}
	wg.Wait()

	if err := s.removeOrphanNetNS(owned); err != nil {
		errs = append(errs, err)
	}
	if _, err := s.GC(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// recoverStop releases a sandbox's network and records it NOTREADY with a reason. The network
// plugin bounds the release (see cninetwork's package doc); ctx ends it early only when the
// server stops.
func (s *Server) recoverStop(ctx context.Context, rec sandboxstore.Record, reason string) error {
	if err := s.release(ctx, rec); err != nil {
		return fmt.Errorf("recover pod sandbox %s: %w", rec.ID, err)
	}
	stored := rec
	stored.State = sandboxstore.StateNotReady
	stored.Reason = reason
	stored.IPs = nil
	if err := s.cfg.Store.Update(stored); err != nil {
		return fmt.Errorf("recover pod sandbox %s: %w", rec.ID, err)
	}
	return nil
}

// removeOrphanNetNS removes every file in NetNSDir not named in owned.
func (s *Server) removeOrphanNetNS(owned map[string]bool) error {
	entries, err := os.ReadDir(s.cfg.NetNSDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns dir %s: %w", s.cfg.NetNSDir, err)
	}
	var errs []error
	for _, e := range entries {
		if owned[e.Name()] {
			continue
		}
		if err := netns.Remove(filepath.Join(s.cfg.NetNSDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GC runs one CNI GC pass and returns the valid set it used: every sandbox whose network may
// exist, that is every record not NOTREADY (a NOTREADY sandbox's network was released). A
// sandbox being set up has its record ("creating") before the plugin records anything, and the
// plugin takes the valid set only after listing its records (cninetwork.Plugin.GC), so the
// server need not hold set-ups back while it reads them; the plugin itself keeps set-ups apart
// from its plugins' GC (which waits for the set-ups that came before it, and holds back those
// that come during it). A sandbox whose failed set-up could not be rolled
// back stays "creating" and valid: its teardown is retried when it is stopped or removed.
func (s *Server) GC(ctx context.Context) ([]string, error) {
	var valid []string
	err := s.cfg.Network.GC(ctx, func(context.Context) ([]string, error) {
		valid = []string{}
		for _, rec := range s.cfg.Store.List() {
			if rec.State != sandboxstore.StateNotReady && !rec.HostNetwork {
				valid = append(valid, rec.ID)
			}
		}
		return valid, nil
	})
	if err != nil {
		return valid, fmt.Errorf("CNI GC with %d valid sandboxes: %w", len(valid), err)
	}
	klog.FromContext(ctx).V(2).Info("CNI GC done", "validSandboxes", len(valid))
	return valid, nil
}
