package cni

import "errors"

// Sentinel errors, go-cni's, which callers branch on with errors.Is or the Is helpers below.
var (
	// ErrCNINotInitialized: fewer networks are ready than WithMinNetworkCount asks for. The
	// error that wraps it also wraps cninetwork.ErrNotReady and says why.
	ErrCNINotInitialized = errors.New("cni plugin not initialized")
	// ErrInvalidConfig: a configuration given to an Opt does not parse.
	ErrInvalidConfig = errors.New("invalid cni config")
	// ErrNotFound: a result has no default interface.
	ErrNotFound = errors.New("not found")
	// ErrRead: the configuration directory cannot be read.
	ErrRead = errors.New("failed to read config file")
	// ErrInvalidResult: a plugin's result is inconsistent.
	ErrInvalidResult = errors.New("invalid result")
	// ErrLoad: Load failed; the error also wraps the Opt's.
	ErrLoad = errors.New("failed to load cni config")
)

// IsCNINotInitialized reports whether err wraps ErrCNINotInitialized.
func IsCNINotInitialized(err error) bool {
	return errors.Is(err, ErrCNINotInitialized)
}

// IsInvalidConfig reports whether err wraps ErrInvalidConfig.
func IsInvalidConfig(err error) bool {
	return errors.Is(err, ErrInvalidConfig)
}

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound)
}

// IsReadFailure reports whether err wraps ErrRead.
func IsReadFailure(err error) bool {
	return errors.Is(err, ErrRead)
}

// IsInvalidResult reports whether err wraps ErrInvalidResult.
func IsInvalidResult(err error) bool {
	return errors.Is(err, ErrInvalidResult)
}
