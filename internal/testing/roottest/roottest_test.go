package roottest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestRequired(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name  string
		value string
		unset bool
		want  bool
	}{
		{name: "unset", unset: true, want: false},
		{name: "empty", value: "", want: false},
		{name: "1", value: "1", want: true},
		{name: "true", value: "true", want: true},
		{name: "0", value: "0", want: false},
		{name: "false", value: "false", want: false},
		{name: "not a bool", value: "yes", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvVar, tc.value)
			if tc.unset {
				os.Unsetenv(EnvVar) // t.Setenv restores it afterwards
			}
			// A root run always requires: it is meant to run the root tests.
			if got, want := Required(), tc.want || root; got != want {
				t.Fatalf("Required() with %s=%q (root %v) = %v, want %v", EnvVar, tc.value, root, got, want)
			}
		})
	}
}

// recorder is a testing.TB that records how Missing stopped it.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

func TestMissing(t *testing.T) {
	root := os.Geteuid() == 0
	for _, set := range []string{"", "1"} {
		t.Run("env="+set, func(t *testing.T) {
			t.Setenv(EnvVar, set)
			r := &recorder{TB: t}
			Missing(r, "plugin %s missing", "bridge")
			msg, wantFail := r.skipped, set != "" || root
			if wantFail {
				msg = r.failed
			}
			if (r.failed != "") != wantFail || (r.skipped != "") == wantFail || !strings.Contains(msg, "plugin bridge missing") {
				t.Fatalf("Missing with %s=%q (root %v): failed %q, skipped %q; want it to fail: %v", EnvVar, set, root, r.failed, r.skipped, wantFail)
			}
		})
	}
}

func TestRequire(t *testing.T) {
	root := os.Geteuid() == 0
	for _, set := range []string{"", "1"} {
		t.Run("env="+set, func(t *testing.T) {
			t.Setenv(EnvVar, set)
			r := &recorder{TB: t}
			Require(r)
			switch {
			case root && (r.failed != "" || r.skipped != ""):
				t.Fatalf("Require stopped a root test: failed %q, skipped %q", r.failed, r.skipped)
			case !root && set != "" && !strings.Contains(r.failed, "needs root"):
				t.Fatalf("Require with %s set, not root: failed %q, want a failure naming root", EnvVar, r.failed)
			case !root && set == "" && (r.failed != "" || !strings.Contains(r.skipped, "needs root")):
				t.Fatalf("Require without %s, not root: failed %q, skipped %q; want a skip naming root", EnvVar, r.failed, r.skipped)
			}
		})
	}
}
