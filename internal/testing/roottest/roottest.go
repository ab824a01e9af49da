// Package roottest decides what a test does when it cannot run here: when the process is not
// root (network namespaces, bridges, iptables), or when a prerequisite that make deps installs
// (the real CNI plugins, crictl) is missing.
//
// Under make test, make e2e, make soak, make bench and CI, the Makefile sets
// CNISHIM_REQUIRE_ROOT_TESTS=1 and such a test fails: no root test passes there by being
// skipped. Elsewhere, in a plain `go test ./...` by a user who is not root, it is skipped with
// the reason, so that the unit tests run and pass on a fresh clone.
package roottest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// EnvVar is the environment variable that makes a missing prerequisite a test failure rather
// than a skip.
const EnvVar = "CNISHIM_REQUIRE_ROOT_TESTS"

// rootReason says what root is needed for and how to run the tests that need it.
const rootReason = "root (network namespaces, bridges, iptables): run make test as root"

// Required reports whether a missing prerequisite must fail the test: when EnvVar is set to a
// true value (or to anything that does not parse as false), or when the process is root, since
// a root run is meant to run the root tests.
func Required() bool {
	if os.Geteuid() == 0 {
		return true
	}
	v, ok := os.LookupEnv(EnvVar)
	if !ok || v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// Require stops tb unless the process is root: it fails it when Required, and skips it
// otherwise, naming why it needs root and how to run it.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "this test needs %s", rootReason)
	}
}

// Missing stops tb because a prerequisite is missing: it fails it when Required, and skips it
// otherwise. The message should name the prerequisite and how to install it.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("%s (failing, not skipping: %s)", msg, requiredBy())
	} else {
		tb.Skipf("%s (set %s=1 to fail instead)", msg, EnvVar)
	}
}

// requiredBy names what made a missing prerequisite a failure.
func requiredBy() string {
	if os.Geteuid() == 0 {
		return "running as root"
	}
	return EnvVar + " is set"
}

// RequireMain is Require for a TestMain whose every test needs root; pkg names the package in
// messages. When the process is root it returns nil and TestMain carries on. Otherwise, when
// Required, it returns the error TestMain must fail with; when not, it prints the reason and
// exits the process with status 0 without running any test, which go test reports as
// "ok ... [no tests to run]" (and go test -v shows the reason).
func RequireMain(pkg string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if Required() {
		return fmt.Errorf("these tests need %s (failing, not skipping: %s)", rootReason, requiredBy())
	}
	// The testing package's own words when no test runs: go test marks the package with them.
	fmt.Printf("%s: skipped: these tests need %s (set %s=1 to fail instead)\ntesting: warning: no tests to run\nPASS\n", pkg, rootReason, EnvVar)
	os.Exit(0)
	return nil
}
