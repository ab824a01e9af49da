//go:build !windows

package atomicfile

// canSyncDir is true: a directory opened read-only can be fsynced.
const canSyncDir = true
