//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SIGTERM while a RunPodSandbox is in flight: the server stops taking calls but lets the
// set-up finish, so crictl runp succeeds and the pod is recorded ready; the server exits 0.
// The plugin chain is made slow by a wrapper around the real bridge plugin that signals when
// its ADD has started.
func TestCRIGracefulStopFinishesInFlightSetUp(t *testing.T) {
	n := newTestNet(t, "e2e-grace")
	wrapDir := t.TempDir()
	started := filepath.Join(wrapDir, "add-started")
	release := filepath.Join(wrapDir, "release")
	// The wrapper waits for the test's go-ahead (a file), so the ADD is in flight for exactly as
	// long as the test needs; no sleeps decide the outcome.
	script := fmt.Sprintf(`#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
  : > %q
  while [ ! -e %q ]; do sleep 0.05; done
fi
exec %q
`, started, release, filepath.Join(env.CNIBin, "bridge"))
	if err := os.WriteFile(filepath.Join(wrapDir, "slowbridge"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, n, "--cni-bin-dir", wrapDir+","+env.CNIBin)
	conf := strings.Replace(n.Conflist(), `"type": "bridge"`, `"type": "slowbridge"`, 1)
	if err := os.WriteFile(filepath.Join(s.ConfDir, "10-grace.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.WaitNetworkReady(true)

	type result struct {
		id  string
		err error
	}
	runp := make(chan result, 1)
	go func() {
		podCfg := filepath.Join(s.Dir, "slow.json")
		if err := os.WriteFile(podCfg, []byte(`{"metadata":{"name":"slow","namespace":"e2e","uid":"uid-slow"}}`), 0o600); err != nil {
			runp <- result{err: err}
			return
		}
		out, err := s.Crictl("runp", podCfg)
		runp <- result{strings.TrimSpace(out), err}
	}()
	waitFile(t, started)

	terminated := make(chan error, 1)
	go func() { terminated <- s.Terminate() }()
	// The server has stopped listening once the socket is gone; new calls are refused.
	for {
		if _, err := os.Stat(s.Sock); os.IsNotExist(err) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.Crictl("pods"); err == nil {
		t.Fatal("a new call succeeded while the server was shutting down")
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	r := <-runp
	if r.err != nil {
		t.Fatalf("crictl runp in flight at SIGTERM failed: %v", r.err)
	}
	if err := <-terminated; err != nil {
		t.Fatal(err)
	}
	s.AddNeedle(r.id)

	// A new server finds the pod ready, and removes it.
	s.Start()
	if st := s.Inspectp(r.id); st.Status.State != "SANDBOX_READY" || st.Status.Network == nil {
		t.Fatalf("after the graceful stop: %+v", st.Status)
	}
	s.MustCrictl("rmp", "-f", r.id)
}

// waitFile waits until path exists; it fails only if that never happens within a generous bound.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
