//go:build !linux

// Package procwait waits for a child process to exit without holding a P of the Go runtime.
package procwait

import "os"

// AwaitExit returns at once off Linux: the process's Wait blocks as usual.
func AwaitExit(*os.Process) {}
