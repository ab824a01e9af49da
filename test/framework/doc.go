//go:build linux

// Package framework is the one test framework of the root test packages (test/e2e,
// test/reliability, test/soak, test/e2e/cninetwork and the cluster tests): what they need to
// drive real `cnishim serve` processes, crictl and the real CNI plugins in real network
// namespaces, and to prove that nothing is left behind.
//
// It offers:
//   - Env: the prerequisites (repo root, CNI plugins, crictl, critest, the cnishim binary,
//     built with -race when CNISHIM_TEST_CNISHIM is unset), found once by Main in a TestMain
//     (MainEnv reads them) or per test by RequireEnv;
//   - Server: a `cnishim serve` process on its own socket, state, conf and cache dirs, that a
//     test starts, kills, stops and restarts, with its logs (checked for data races and printed
//     when the test fails), a CRI gRPC client and crictl wrappers;
//   - Net: a test network (bridge + host-local + portmap) on a bridge name and subnet no other
//     test uses, and Slots to derive such names;
//   - checks: CheckNoLeaks over internal/lib/leakcheck, stray plugin processes, goroutine counts;
//   - waits: Eventually, Pause, and the free port and ID helpers.
//
// Root and prerequisites follow internal/testing/roottest: a test (or a TestMain, through Main) stops
// when it is not root or a prerequisite is missing; it fails when CNISHIM_REQUIRE_ROOT_TESTS is
// set (make test, make e2e, make soak, CI) or when running as root, and is skipped otherwise,
// so that a plain `go test ./...` by a user who is not root passes on a fresh clone.
package framework
