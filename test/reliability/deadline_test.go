//go:build linux

package reliability

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// delegateSleep is how long the slow IPAM delegate of TestPluginDelegatePastDeadline sleeps
// before it asks host-local for an address: twice the operation timeout.
const delegateSleep = 2 * faultTimeout

// deadlineSlack is how long past the operation timeout a set-up whose plugin hangs may take
// to fail on a busy machine: the kill, the executor's grace, the rollback.
const deadlineSlack = 4 * time.Second

// writePlugin writes an executable shell script plugin into dir and returns its path.
func writePlugin(t *testing.T, dir, name, body string) string {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPluginDelegatePastDeadline: the faulty plugin of a bridge + faulty chain delegates to an
// IPAM plugin (cnitest again) that sleeps past the operation's deadline and would then have a
// real host-local allocate an address. At the deadline both are killed: the set-up fails with
// ErrTimeout at about the deadline, no process of either remains, and after the rollback, even
// once the delegate's sleep is over, host-local holds no address. (libcni's invoke package
// gives a delegate pipes of the plugin's own, so nothing holds the executor's pipes: a kill of
// the plugin's PID alone returns at the deadline and leaves the delegate to allocate after the
// rollback.)
func TestPluginDelegatePastDeadline(t *testing.T) {
	n := newNode(t)
	n.installFaulty()
	plugintest.MustInstallAs(t, n.binDir, "faultyipam")
	mainBehavior := filepath.Join(n.dir, "faulty.behavior.json")
	ipamBehavior := filepath.Join(n.dir, "faultyipam.behavior.json")
	plugintest.MustWriteBehavior(t, mainBehavior, plugintest.Behavior{Commands: map[string]behavior.Action{
		"ADD": {DelegateIPAM: true},
		"DEL": {DelegateIPAM: true},
	}})
	plugintest.MustWriteBehavior(t, ipamBehavior, plugintest.Behavior{Commands: map[string]behavior.Action{
		"ADD": {SleepMS: int(delegateSleep.Milliseconds()), DelegateIPAM: true, IPAMDelegate: "host-local"},
		"DEL": {DelegateIPAM: true, IPAMDelegate: "host-local"},
	}})
	faulty := fmt.Sprintf(`{
      "type": "faulty", "behavior": %q,
      "ipam": {"type": "faultyipam", "behavior": %q, "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, mainBehavior, ipamBehavior, filepath.Join(n.ipamDir, "faulty"), n.subnets[1])
	n.writeConf("10-faulty.conflist", conflist("1.0.0", faultNetwork, n.bridgePlugin(), faulty))
	p := n.plugin(faultTimeout)
	framework.WaitDefault(t, p, faultNetwork)

	before := leakcheck.Take(n.scope("", n.cacheDir))
	pod := n.pod("delegate")
	ctx, cancel := framework.CallContext(t)
	defer cancel()
	start := time.Now()
	_, err := p.SetUpPod(ctx, pod)
	took := time.Since(start)
	t.Logf("set-up failed after %s: %v", took, err)
	if !errors.Is(err, cninetwork.ErrTimeout) {
		t.Errorf("set-up error %v; want ErrTimeout", err)
	}
	if took > faultTimeout+deadlineSlack {
		t.Errorf("set-up took %s; want about the %s operation timeout, not the delegate's %s", took, faultTimeout, delegateSleep)
	}
	// Both are gone the moment the set-up returns: nothing to wait for.
	framework.CheckNoStrays(t, []string{n.binDir})
	// Past the moment the delegate would have had host-local allocate.
	time.Sleep(time.Until(start.Add(delegateSleep + 2*time.Second)))
	framework.CheckNoStrays(t, []string{n.binDir})
	framework.CheckNoLeaks(t, "delegate past the deadline", before, leakcheck.Take(n.scope("", n.cacheDir)))
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// TestPluginHelperHoldsStdout: the last plugin of a bridge + helper chain starts a helper that
// keeps its stdout and stderr for 30 s, then runs cnitest, which passes the bridge's result
// on and exits 0, or hangs. The set-up that succeeds does so within a few seconds, not 30;
// the one that hangs fails at the operation timeout; either way the helper is killed.
func TestPluginHelperHoldsStdout(t *testing.T) {
	n := newNode(t)
	faultyBin := n.installFaulty()
	behaviorFile := filepath.Join(n.dir, "helper.behavior.json")
	pidFile := filepath.Join(n.dir, "helper.pid")
	writePlugin(t, n.binDir, "helper", fmt.Sprintf("sleep 30 &\necho $! > %q\nexec %q\n", pidFile, faultyBin))
	n.writeConf("10-helper.conflist", conflist("1.0.0", faultNetwork, n.bridgePlugin(), fmt.Sprintf(`{"type": "helper", "behavior": %q}`, behaviorFile)))
	p := n.plugin(faultTimeout)
	framework.WaitDefault(t, p, faultNetwork)
	for _, tt := range []struct {
		name string
		do   string
	}{
		{name: "plugin succeeds", do: behavior.Succeed},
		{name: "plugin hangs past the deadline", do: behavior.Hang},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plugintest.MustWriteBehavior(t, behaviorFile, plugintest.Behavior{Commands: map[string]behavior.Action{"ADD": {Do: tt.do}}})
			before := leakcheck.Take(n.scope("", n.cacheDir))
			pod := n.pod("helper")
			ctx, cancel := framework.CallContext(t)
			defer cancel()
			start := time.Now()
			st, err := p.SetUpPod(ctx, pod)
			took := time.Since(start)
			t.Logf("set-up took %s: %v", took, err)
			if tt.do == behavior.Succeed {
				if err != nil || len(st.IPs) == 0 {
					t.Errorf("set-up = %+v, %v; want the bridge's IP", st, err)
				}
				if took > deadlineSlack {
					t.Errorf("set-up took %s; want a few seconds at most, not the helper's 30 s", took)
				}
			} else {
				if !errors.Is(err, cninetwork.ErrTimeout) {
					t.Errorf("set-up error %v; want ErrTimeout", err)
				}
				if took > faultTimeout+deadlineSlack {
					t.Errorf("set-up took %s; want about the %s operation timeout, not the helper's 30 s", took, faultTimeout)
				}
			}
			checkProcessGone(t, "the helper", pidFile)
			if err == nil {
				if err := p.TearDownPod(ctx, pod); err != nil {
					t.Fatal(err)
				}
			}
			framework.CheckNoLeaks(t, tt.name, before, leakcheck.Take(n.scope("", n.cacheDir)))
			framework.CheckNoStrays(t, []string{n.binDir})
		})
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// checkProcessGone fails the test unless the process whose ID is in pidFile exits (or is a
// zombie waiting for init) within a few seconds, and kills it then.
func checkProcessGone(t *testing.T, what, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	for deadline := time.Now().Add(deadlineSlack); ; time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s (process %d) outlived the set-up", what, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
}

// floodBytes is how much the flood plugin writes.
const floodBytes = 100 << 20

// floodNetwork is the name of the network whose second plugin floods its output.
const floodNetwork = "relflood"

// floodNode is a node whose network is a bridge + flood chain. On ADD the flood plugin does
// what the file it returns holds says: "stdout" writes floodBytes to stdout and exits 0,
// "stderr" writes them to stderr and exits 1; it succeeds silently on every other command.
func floodNode(t *testing.T) (*node, string) {
	t.Helper()
	n := newNode(t)
	mode := filepath.Join(n.dir, "flood.mode")
	writePlugin(t, n.binDir, "flood", fmt.Sprintf(`case "$CNI_COMMAND" in
ADD)
	cat >/dev/null
	case "$(cat %q)" in
	stdout) head -c %d /dev/zero ;;
	stderr) yes | head -c %d >&2; exit 1 ;;
	esac ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
esac
`, mode, floodBytes, floodBytes))
	n.writeConf("10-flood.conflist", conflist("1.0.0", floodNetwork, n.bridgePlugin(), `{"type": "flood"}`))
	return n, mode
}

// TestPluginFloodsOutput: a plugin that writes 100 MiB to stdout fails the set-up with an error
// naming it; one that writes 100 MiB to stderr fails with the start of it and how much was
// dropped; neither leaves anything behind, and the executor holds no more than its caps.
func TestPluginFloodsOutput(t *testing.T) {
	n, mode := floodNode(t)
	p := n.plugin(faultTimeout)
	framework.WaitDefault(t, p, floodNetwork)
	for _, tt := range []struct {
		mode string
		want []string
	}{
		{mode: "stdout", want: []string{`plugin type="flood"`, `plugin "flood": wrote more than 4 MiB to stdout`}},
		{mode: "stderr", want: []string{`plugin type="flood"`, fmt.Sprintf(`(the first 64 KiB of its stderr; %d more bytes dropped): exit status 1`, floodBytes-64<<10)}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			if err := os.WriteFile(mode, []byte(tt.mode), 0o644); err != nil {
				t.Fatal(err)
			}
			before := leakcheck.Take(n.scope("", n.cacheDir))
			pod := n.pod("flood-" + tt.mode)
			ctx, cancel := framework.CallContext(t)
			defer cancel()
			start := time.Now()
			_, err := p.SetUpPod(ctx, pod)
			took := time.Since(start)
			if err == nil {
				t.Fatal("set-up succeeded; want the flood's error")
			}
			msg := err.Error()
			t.Logf("set-up failed after %s: %.400s", took, msg)
			for _, w := range append([]string{fmt.Sprintf("network %q", floodNetwork), pod.String()}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not say %q: %.400s", w, msg)
				}
			}
			if errors.Is(err, cninetwork.ErrTimeout) || strings.Contains(msg, "rollback") {
				t.Errorf("want the plugin's own error, and a clean rollback: %.400s", msg)
			}
			if len(msg) > 256<<10 {
				t.Errorf("error of %d KiB; want the stderr cap's 64 KiB and a little more", len(msg)>>10)
			}
			framework.CheckNoLeaks(t, tt.mode, before, leakcheck.Take(n.scope("", n.cacheDir)))
			framework.CheckNoStrays(t, []string{n.binDir})
		})
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// TestPluginFloodsStdoutServe: through cnishim serve, a plugin that writes 100 MiB to stdout
// fails RunPodSandbox with an error naming it, and the server's peak RSS grows by far less
// than the flood.
func TestPluginFloodsStdoutServe(t *testing.T) {
	n, mode := floodNode(t)
	if err := os.WriteFile(mode, []byte("stdout"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, n, serverOpts{timeout: faultTimeout})
	ctx := t.Context()
	waitServerReady(t, s)
	peakBefore := peakRSS(t, s.PID())
	cctx, cancel := framework.CallContext(t)
	defer cancel()
	resp, err := s.RT.RunPodSandbox(cctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("flood")})
	if err == nil {
		n.addNeedle(resp.GetPodSandboxId())
		t.Fatal("RunPodSandbox succeeded; want the flood's error")
	}
	if want := `plugin "flood": wrote more than 4 MiB to stdout`; !strings.Contains(err.Error(), want) {
		t.Errorf("RunPodSandbox error does not say %q: %.400s", want, err)
	}
	peakAfter := peakRSS(t, s.PID())
	t.Logf("server peak RSS %d MiB before, %d MiB after a %d MiB flood", peakBefore>>20, peakAfter>>20, floodBytes>>20)
	if grown := peakAfter - peakBefore; grown > 64<<20 {
		t.Errorf("server peak RSS grew by %d MiB for a plugin's %d MiB of stdout; want the 4 MiB cap's worth", grown>>20, floodBytes>>20)
	}
	if ids, err := s.List(ctx); err != nil || len(ids) != 0 {
		t.Errorf("sandboxes after the failure: %v, %v; want none", ids, err)
	}
	framework.CheckNoStrays(t, []string{n.binDir}, s.PID())
}

// peakRSS returns process pid's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
