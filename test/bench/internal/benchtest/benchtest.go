// Package benchtest holds helpers for the benchmark's own tests, which need root and the
// real plugins.
package benchtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// CNIBinDir returns the real plugins' directory: $CNISHIM_TEST_CNI_BIN, else the repository's
// _output/cni/bin. It fails the test when the plugins are missing, or when not root.
func CNIBinDir(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test needs root: it creates network namespaces, a bridge and iptables rules")
	}
	dir := os.Getenv("CNISHIM_TEST_CNI_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "_output", "cni", "bin")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			tb.Fatalf("CNI plugin %s missing in %s (run hack/install-cni-plugins.sh or set CNISHIM_TEST_CNI_BIN): %v", p, dir, err)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}
