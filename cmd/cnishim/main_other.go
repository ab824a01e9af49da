//go:build !linux

// Command cnishim needs Linux: network namespaces, veths and bridges.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "cnishim runs on Linux only")
	os.Exit(1)
}
