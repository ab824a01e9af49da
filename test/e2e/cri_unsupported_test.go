//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Commands that would create a container or pull an image get a clear Unimplemented error at
// once, never a hang or an "unknown service". (The read-only ones succeed: see
// TestCRIReadOnlyCommands.)
func TestCRIUnsupportedCalls(t *testing.T) {
	s := startServer(t, newTestNet(t, "e2e-unsupported"))
	podCfg := filepath.Join(s.Dir, "pod.json")
	ctrCfg := filepath.Join(s.Dir, "container.json")
	if err := os.WriteFile(podCfg, []byte(`{"metadata":{"name":"p","namespace":"e2e","uid":"u"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctrCfg, []byte(`{"metadata":{"name":"c"},"image":{"image":"registry.invalid/none:1"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		rpc  string // the RPC the message names; "" for any
	}{
		{"create", []string{"create", "--no-pull", "0123456789ab", ctrCfg, podCfg}, "CreateContainer"},
		{"pull", []string{"pull", "registry.invalid/none:1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A hang guard only: a correct server answers at once.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			_, err := s.CrictlCtx(ctx, tc.args...)
			if err == nil {
				t.Fatalf("crictl %s succeeded", tc.name)
			}
			if ctx.Err() != nil {
				t.Fatalf("crictl %s hung: %v", tc.name, err)
			}
			msg := err.Error()
			want := "cnishim runs network sandboxes only: "
			if tc.rpc != "" {
				want += tc.rpc + " is not supported"
			}
			if !strings.Contains(msg, "Unimplemented") || !strings.Contains(msg, want) {
				t.Fatalf("crictl %s error = %s\nwant code Unimplemented and %q", tc.name, msg, want)
			}
		})
	}
}
