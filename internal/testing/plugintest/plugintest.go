// Package plugintest builds the cnitest test plugin (test/plugins/cnitest) once per test
// binary and installs it under the plugin names a test needs, with helpers to write its
// behavior file and read what it recorded.
//
// Typical use, from a package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(plugintest.Main(m)) }
//
// and in a test:
//
//	bin := t.TempDir()
//	plugintest.MustInstallAs(t, bin, "bridge", "host-local")
package plugintest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
)

// Re-exported so tests need only this package.
type (
	// Behavior is the plugin's behavior file; see package behavior.
	Behavior = behavior.File
	// Action is what the plugin does for one command; see package behavior.
	Action = behavior.Action
	// Record is one recorded invocation; see package behavior.
	Record = behavior.Record
	// IP is one address of an ADD result; see package behavior.
	IP = behavior.IP
	// Interface is one interface of an ADD result; see package behavior.
	Interface = behavior.Interface
)

// Actions, re-exported from package behavior.
const (
	Succeed   = behavior.Succeed
	Hang      = behavior.Hang
	Exit      = behavior.Exit
	Garbage   = behavior.Garbage
	Truncated = behavior.Truncated
	Error     = behavior.Error
)

// pkgPath is the plugin's import path.
const pkgPath = "github.com/cnishim/cnishim/test/plugins/cnitest"

// build is the process-wide result of building the plugin; the build happens once.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Build builds the plugin once per process (later calls return the same binary) into a
// temporary directory and returns the binary's path. Call Cleanup when done, or use Main.
func Build() (string, error) {
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "cnitest-build-")
		if err != nil {
			build.err = err
			return
		}
		out := filepath.Join(dir, "cnitest")
		cmd := exec.Command(goTool(), "build", "-o", out, pkgPath)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			build.err = fmt.Errorf("go build %s: %w\n%s", pkgPath, err, b)
			return
		}
		build.dir, build.path = dir, out
	})
	return build.path, build.err
}

// Cleanup removes the built plugin. Calling Build afterwards is an error.
func Cleanup() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// Main builds the plugin, runs the tests and removes the plugin; for TestMain. A build
// failure fails the whole binary with exit status 1.
func Main(m *testing.M) int {
	if _, err := Build(); err != nil {
		fmt.Fprintln(os.Stderr, "plugintest:", err)
		return 1
	}
	defer Cleanup()
	return m.Run()
}

// MustBuild is Build that fails tb on error.
func MustBuild(tb testing.TB) string {
	tb.Helper()
	p, err := Build()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// InstallAs copies the built plugin into dir (created if needed) under each name, as an
// executable file, and returns the installed paths. Each copy is a file of its own, so a
// test can replace or remove one without touching the others.
func InstallAs(dir string, names ...string) ([]string, error) {
	src, err := Build()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if n == "" || strings.ContainsRune(n, os.PathSeparator) {
			return nil, fmt.Errorf("plugin name %q is not a bare name", n)
		}
		dst := filepath.Join(dir, n)
		if err := copyFile(src, dst); err != nil {
			return nil, fmt.Errorf("install %s: %w", dst, err)
		}
		out = append(out, dst)
	}
	return out, nil
}

// MustInstallAs is InstallAs that fails tb on error.
func MustInstallAs(tb testing.TB, dir string, names ...string) []string {
	tb.Helper()
	p, err := InstallAs(dir, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// copyFile writes src to dst through a temporary file renamed into place, so a watcher never
// sees a partial binary under dst's name.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// WriteBehavior writes b as JSON to path.
func WriteBehavior(path string, b Behavior) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// MustWriteBehavior is WriteBehavior that fails tb on error.
func MustWriteBehavior(tb testing.TB, path string, b Behavior) {
	tb.Helper()
	if err := WriteBehavior(path, b); err != nil {
		tb.Fatal(err)
	}
}

// SidecarPath returns where the plugin installed at binary looks for its own behavior file.
func SidecarPath(binary string) string { return binary + behavior.SidecarSuffix }

// ReadRecords returns the invocations recorded in path, oldest first; a missing file means
// none.
func ReadRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("record %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

// MustReadRecords is ReadRecords that fails tb on error.
func MustReadRecords(tb testing.TB, path string) []Record {
	tb.Helper()
	r, err := ReadRecords(path)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// goTool returns the go command: $GOROOT/bin/go when GOROOT is set (go test sets it for the
// test binary), else the first go in PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
