package cninetwork

import (
	"errors"

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
