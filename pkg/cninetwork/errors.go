package cninetwork

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cnishim/cnishim/internal/lib/admission"
	"github.com/cnishim/cnishim/pkg/confwatch"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotReady: no network is ready (see Status for why). It is confwatch's, so that a
	// caller of either package branches on one value.
	ErrNotReady = confwatch.ErrNotReady
	// ErrInvalidPod: the Pod description would be unsafe or ambiguous to hand to a plugin.
	ErrInvalidPod = errors.New("invalid pod")
	// ErrUnknownSandbox: the plugin knows no network for the sandbox.
	ErrUnknownSandbox = errors.New("unknown pod sandbox")
	// ErrTimeout: an operation or a plugin exec ran past its deadline.
	ErrTimeout = errors.New("timed out")
	// ErrRollbackFailed: a set-up failed and some of what it attached could not be deleted
	// again. The Plugin keeps its record of the sandbox, so TearDownPod retries the deletion.
	// A SetUpPod error without it means nothing of the set-up is left.
	ErrRollbackFailed = errors.New("rollback failed")
)

// chainError describes the failure of a plugin chain of network. When ctx has ended, it says
// which plugin was running and, for a deadline, wraps ErrTimeout. namePlugin adds the plugin's
// name where libcni's error does not carry it (it does for ADD and DEL).
func chainError(ctx context.Context, start time.Time, network, verb string, tr *execTrace, namePlugin bool, err error) error {
	plugin := tr.plugin()
	if ctxErr := ctx.Err(); ctxErr != nil {
		what := "before any plugin ran"
		if plugin != "" {
			what = fmt.Sprintf("in plugin %q", plugin)
		}
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("network %q: %s %w %s after %s (%w): %w",
				network, verb, ErrTimeout, what, time.Since(start).Round(time.Millisecond), ctxErr, err)
		}
		return fmt.Errorf("network %q: %s interrupted %s (%w): %w", network, verb, what, ctxErr, err)
	}
	if namePlugin && plugin != "" {
		return fmt.Errorf("network %q: %s: plugin %q: %w", network, verb, plugin, err)
	}
	return fmt.Errorf("network %q: %s: %w", network, verb, err)
}

// waitError describes a failure to start an operation on pod: waiting for the sandbox's lock or
// for admission ended with the caller's context.
func (p *Plugin) waitError(pod *Pod, start time.Time, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w after %s: %w", pod, ErrTimeout, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("%s: %w", pod, err)
}

// queueError is the error of a set-up whose wait for its sandbox or for admission failed with
// err. When the caller's context is still live, the wait ended to leave the chain its time:
// the error says so, and wraps ErrTimeout, admission.ErrQueueTimeout and err.
func (p *Plugin) queueError(ctx context.Context, su *setUp, err error) error {
	dl, ok := ctx.Deadline()
	if ctx.Err() != nil || !ok || !errors.Is(err, context.DeadlineExceeded) {
		return p.waitError(su.pod, su.start, err)
	}
	need, _ := p.expected(su.plan)
	if !errors.Is(err, admission.ErrQueueTimeout) {
		// The wait for the sandbox's lock or the GC gate ended it.
		err = fmt.Errorf("%w: %w", admission.ErrQueueTimeout, err)
	}
	return fmt.Errorf("%s: %w: not started after waiting %s: %s left before the caller's deadline, and a set-up on %s takes up to %s: %w",
		su.pod, ErrTimeout, time.Since(su.start).Round(time.Millisecond), time.Until(dl).Round(time.Millisecond),
		su.networks(), need.Round(time.Millisecond), err)
}
