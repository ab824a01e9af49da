//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/testing/roottest"
)

// cniBinDir returns the real plugins' directory; the commands validate configs against it.
func cniBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CNISHIM_TEST_CNI_BIN")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "_output", "cni", "bin")
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			roottest.Missing(t, "CNI plugin %q missing in %s (run make deps or hack/install-cni-plugins.sh): %v", p, dir, err)
		}
	}
	return dir
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no command", nil, 2, "Commands:", ""},
		{"help", []string{"help"}, 0, "serve", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, 0, "cnishim " + version, ""},
		{"bad flag", []string{"status", "--no-such-flag"}, 2, "", "no-such-flag"},
		{"stray argument", []string{"version", "extra"}, 2, "", `unexpected argument "extra"`},
		{"bad output format", []string{"status", "-o", "yaml"}, 2, "", "want text or json"},
		{"bad listen", []string{"serve", "--listen", "tcp://127.0.0.1:1"}, 2, "", "unix:///absolute/path"},
		{"flag help", []string{"gc", "-h"}, 0, "", "--sandbox-ids"},
		{"demo pods out of range", []string{"demo", "--pods", "1"}, 2, "", "want 2 to 200"},
		{"no networks per pod", []string{"serve", "--max-pod-networks", "0"}, 2, "", "--max-pod-networks 0: must be at least 1"},
		{"check without a sandbox", []string{"check"}, 2, "", "--pod-sandbox-id is required"},
		{"bad loopback", []string{"serve", "--loopback", "bogus"}, 2, "", "want in-process, plugin or off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.inStdout) || !strings.Contains(stderr.String(), tc.inStderr) {
				t.Fatalf("run(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
					tc.args, code, stdout.String(), stderr.String(), tc.code, tc.inStdout, tc.inStderr)
			}
		})
	}
}

func TestSplitListAndUnixPath(t *testing.T) {
	if got := splitList(" /opt/cni/bin, ,/usr/lib/cni,"); !slices.Equal(got, []string{"/opt/cni/bin", "/usr/lib/cni"}) {
		t.Fatalf("splitList = %q", got)
	}
	for in, want := range map[string]string{
		"unix:///run/cnishim/cnishim.sock": "/run/cnishim/cnishim.sock",
		"unix:///run/x/../y.sock":          "/run/y.sock",
		"unix://relative.sock":             "",
		"/run/cnishim.sock":                "",
		"tcp://127.0.0.1:80":               "",
	} {
		got, err := unixPath(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("unixPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

const goodConflist = `{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge","bridge":"cnishim-ut0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.99.250.0/24"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}`

// status reports the chosen network, every skipped file with its reason, and warns about
// configuration that users other than root can change.
func TestStatusReport(t *testing.T) {
	roottest.Require(t) // it gives a config file to another user
	bin := cniBinDir(t)
	conf := t.TempDir()
	for name, body := range map[string]string{
		"05-broken.conf":     `{"cniVersion":`,
		"10-good.conflist":   goodConflist,
		"20-noplugin.conf":   `{"cniVersion":"1.0.0","name":"np","type":"no-such-plugin"}`,
		"30-notconfig.txt":   "ignored",
		"40-second.conflist": strings.Replace(goodConflist, `"good"`, `"second"`, 1),
	} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A world-writable config file and one owned by another user.
	if err := os.Chmod(filepath.Join(conf, "40-second.conflist"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(conf, "10-good.conflist"), 1000, 1000); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	args := []string{"status", "-o", "json", "--cni-conf-dir", conf, "--cni-bin-dir", bin, "--listen", "unix://" + filepath.Join(t.TempDir(), "none.sock")}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("status exit %d: %s", code, stderr.String())
	}
	var rep statusReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if !rep.Ready || rep.Default == nil || rep.Default.Name != "good" || rep.Default.CNIVersion != "1.0.0" ||
		!slices.Equal(rep.Default.Plugins, []string{"bridge", "portmap"}) || !slices.Equal(rep.Default.Capabilities, []string{"portMappings"}) ||
		len(rep.Networks) != 2 || !slices.Equal(rep.Selectable, []string{"good", "second"}) {
		t.Fatalf("report = %+v", rep)
	}
	skipped := map[string]string{}
	for _, s := range rep.Skipped {
		skipped[filepath.Base(s.File)] = s.Reason
	}
	if len(skipped) != 2 || skipped["05-broken.conf"] == "" || !strings.Contains(skipped["20-noplugin.conf"], "no-such-plugin") {
		t.Fatalf("skipped = %v, want the broken file and the one with a missing plugin, each with a reason", skipped)
	}
	warnings := strings.Join(rep.Warnings, "\n")
	if !strings.Contains(warnings, "40-second.conflist is writable by group or others (mode 0666)") ||
		!strings.Contains(warnings, "10-good.conflist is owned by uid 1000") {
		t.Fatalf("warnings = %s", warnings)
	}
	if strings.Contains(warnings, "directory above a CNI directory /tmp ") {
		t.Fatalf("warned about the sticky /tmp above the conf dir: %s", warnings)
	}
	if rep.Server == nil || rep.Server.Reachable {
		t.Fatalf("server = %+v, want not reachable", rep.Server)
	}

	// The text form says the same; with no valid config, it says why and exits 1.
	empty := t.TempDir()
	stdout.Reset()
	code := run(t.Context(), []string{"status", "--cni-conf-dir", empty, "--cni-bin-dir", bin, "--listen", "unix:///nonexistent/x.sock"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stdout.String(), "Network: NOT READY") || !strings.Contains(stdout.String(), empty) {
		t.Fatalf("status on an empty dir: exit %d\n%s", code, stdout.String())
	}
}

// klogLine matches a line in klog's text format, e.g. `I1129 19:42:56.123456  123 scan.go:431] "..."`.
var klogLine = regexp.MustCompile(`(?m)^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} `)

// status keeps its report free of log lines: the libraries log to stderr, and at the default
// verbosity a routine config change is not logged at all; -v=2 shows it, on stderr.
func TestStatusLogsOnlyToStderr(t *testing.T) {
	bin := cniBinDir(t)
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "10-good.conflist"), []byte(goodConflist), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		flags      []string
		wantStderr string // a log message stderr must hold; "" for no log line at all
	}{
		{"default", nil, ""},
		{"json", []string{"-o", "json"}, ""},
		{"v=2", []string{"-v", "2"}, `"Selected default CNI network"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"status", "--cni-conf-dir", conf, "--cni-bin-dir", bin, "--listen", "unix:///nonexistent/x.sock"}, tc.flags...)
			if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
				t.Fatalf("status exit %d: %s", code, stderr.String())
			}
			if klogLine.MatchString(stdout.String()) {
				t.Errorf("stdout holds log lines:\n%s", stdout.String())
			}
			if tc.wantStderr == "" && klogLine.MatchString(stderr.String()) {
				t.Errorf("stderr holds log lines at the default verbosity:\n%s", stderr.String())
			}
			if tc.wantStderr != "" && (!klogLine.MatchString(stderr.String()) || !strings.Contains(stderr.String(), tc.wantStderr)) {
				t.Errorf("stderr lacks the log line %s:\n%s", tc.wantStderr, stderr.String())
			}
		})
	}
}

// status -o json gives every list, empty or not, as a JSON array, never null.
func TestStatusJSONEmptyLists(t *testing.T) {
	bin := cniBinDir(t)
	var stdout, stderr bytes.Buffer
	args := []string{"status", "-o", "json", "--cni-conf-dir", t.TempDir(), "--cni-bin-dir", bin, "--listen", "unix:///nonexistent/x.sock"}
	if code := run(t.Context(), args, &stdout, &stderr); code != 1 {
		t.Fatalf("status on an empty dir: exit %d, want 1: %s", code, stderr.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	for _, key := range []string{"networks", "skipped", "warnings"} {
		if l, ok := rep[key].([]any); !ok || len(l) != 0 {
			t.Errorf("%q = %#v, want []", key, rep[key])
		}
	}
	if strings.Contains(stdout.String(), "null") {
		t.Errorf("JSON holds a null:\n%s", stdout.String())
	}
}

func TestUnsafePerm(t *testing.T) {
	roottest.Require(t) // it gives files to root and to another user
	dir := t.TempDir()
	mk := func(name string, mode os.FileMode, isDir bool, uid int) string {
		p := filepath.Join(dir, name)
		var err error
		if isDir {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, nil, 0o600)
		}
		if err == nil {
			err = os.Chmod(p, mode)
		}
		if err == nil {
			err = os.Chown(p, uid, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		stickyOK bool
		want     string
	}{
		{"root file 0644", mk("a", 0o644, false, 0), false, ""},
		{"group-writable file", mk("b", 0o664, false, 0), false, "writable by group or others (mode 0664)"},
		{"file of another user", mk("c", 0o644, false, 1000), false, "owned by uid 1000"},
		{"both", mk("d", 0o666, false, 1000), false, "owned by uid 1000 and writable by group or others"},
		{"sticky dir above", mk("e", 0o777|os.ModeSticky, true, 0), true, ""},
		{"sticky dir as CNI dir", mk("f", 0o777|os.ModeSticky, true, 0), false, "writable by group or others (mode 0777)"},
		{"missing", filepath.Join(t.TempDir(), "none"), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := unsafePerm(tc.path, "thing", tc.stickyOK)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("unsafePerm(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until cond holds; it fails only if it never does within a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watch prints the starting state and each change of the chosen network, and stops cleanly
// when its context ends.
func TestWatchPrintsChanges(t *testing.T) {
	bin := cniBinDir(t)
	conf := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"watch", "--cni-conf-dir", conf, "--cni-bin-dir", bin}, &out, &errOut)
	}()

	waitFor(t, "the not-ready line", func() bool { return strings.Contains(out.String(), "not ready:") })
	write := func(name, body string) {
		tmp := filepath.Join(conf, "."+name)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(conf, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("20-good.conflist", goodConflist)
	waitFor(t, `the "good" line`, func() bool { return strings.Contains(out.String(), `default network "good"`) })
	// A file sorting first takes over.
	write("10-first.conflist", strings.Replace(goodConflist, `"good"`, `"first"`, 1))
	waitFor(t, `the "first" line`, func() bool { return strings.Contains(out.String(), `default network "first"`) })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "not ready") || !strings.Contains(lines[1], `"good"`) || !strings.Contains(lines[2], `"first"`) ||
		!strings.Contains(lines[2], "plugins bridge -> portmap") {
		t.Fatalf("watch printed:\n%s\nwant exactly: not ready, good, first", out.String())
	}
}

// The demo, the README's main command, passes on this machine: three pods set up, reaching
// each other and the host port, and nothing left afterwards.
func TestDemo(t *testing.T) {
	roottest.Require(t)
	bin := cniBinDir(t)
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"demo", "--cni-bin-dir", bin}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"Pod demo-1 -> pod demo-2", "Pod demo-3 -> pod demo-1", `"hello from demo-1"`,
		"(host port) -> pod demo-1", "no IP in the host-local store", "Removed bridge cnishim-demo0", "Demo passed",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "cnishim-demo/demo-") < 6 { // progress lines and table rows
		t.Fatalf("demo output lacks the pods:\n%s", out)
	}
	// The demo's steps are not interleaved with log lines, on either stream.
	if klogLine.MatchString(out) || klogLine.MatchString(stderr.String()) {
		t.Fatalf("demo printed log lines at the default verbosity:\nstdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
}

// serve logs a network that is not ready at start as an error, as the kubelet logs a runtime
// network that is not ready, on stderr; stdout stays empty.
func TestServeLogsNotReadyAsError(t *testing.T) {
	bin := cniBinDir(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "cri.sock")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "unix://" + sock, "--cni-conf-dir", filepath.Join(dir, "net.d"),
			"--cni-bin-dir", bin, "--cni-cache-dir", filepath.Join(dir, "cache"), "--state-dir", filepath.Join(dir, "state"), "-v", "2"}, &stdout, &stderr)
	}()
	waitFor(t, "the server's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	// A call's own log lines reach the server's log too, not klog's global one.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = runtimeapi.NewRuntimeServiceClient(conn).RunPodSandbox(t.Context(), &runtimeapi.RunPodSandboxRequest{
		Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}}})
	_ = conn.Close()
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RunPodSandbox with no network = %v; want FailedPrecondition", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d: %s", code, stderr.String())
	}
	var notReady []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, `"Network not ready"`) {
			notReady = append(notReady, line)
		}
	}
	if len(notReady) != 1 || !strings.HasPrefix(notReady[0], "E") || !klogLine.MatchString(notReady[0]) {
		t.Errorf("want one error line \"Network not ready\", got %q in:\n%s", notReady, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"RPC refused"`) || !strings.Contains(stderr.String(), "RunPodSandbox") {
		t.Errorf("the refused RunPodSandbox was not logged at -v 2 in the server's log:\n%s", stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("serve wrote to stdout:\n%s", stdout.String())
	}
}

// TestLoopbackFlag: --loopback maps to the Plugin's loopback options.
func TestLoopbackFlag(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		opts int
	}{{"in-process", 0}, {"plugin", 1}, {"off", 1}} {
		var l loopbackFlag
		if err := l.Set(tc.arg); err != nil {
			t.Fatalf("Set(%q): %v", tc.arg, err)
		}
		if l.String() != tc.arg || len(l.options()) != tc.opts {
			t.Errorf("--loopback %s: String() = %q, %d options; want %q, %d", tc.arg, l.String(), len(l.options()), tc.arg, tc.opts)
		}
	}
	var l loopbackFlag
	if l.String() != "in-process" || len(l.options()) != 0 {
		t.Errorf("default --loopback: %q, %d options", l.String(), len(l.options()))
	}
}
