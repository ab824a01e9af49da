//go:build linux

package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/seam"
	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/test/framework"
)

// TestServeFileModes checks that only root can reach cnishim serve's CRI socket and read or
// change its state: the socket is 0600, the socket directory it creates and the state dir (even
// one that existed with a wider mode) are 0700, and so are the dirs of sandbox records and
// network namespaces; a sandbox's record and its libcni cache entry (which hold the pod's
// config and annotations) are 0600.
func TestServeFileModes(t *testing.T) {
	n := newNode(t)
	n.writeConf("10-good.conflist", conflist("1.0.0", goodNetwork, n.bridgePlugin()))
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(t.TempDir(), "run", "cnishim") // does not exist: the server makes it
	s := startServer(t, n, serverOpts{timeout: time.Minute, sockDir: sockDir, stateDir: stateDir})

	// A sandbox, so that every directory the server makes exists.
	ctx := t.Context()
	resp, err := s.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("modes")})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetPodSandboxId()
	n.addNeedle(id)
	defer func() {
		if _, err := s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Error(err)
		}
	}()

	checked := 0
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{s.Sock, os.ModeSocket | 0o600},
		{sockDir, os.ModeDir | 0o700},
		{stateDir, os.ModeDir | 0o700},
		{filepath.Join(stateDir, "sandboxes"), os.ModeDir | 0o700},
		{filepath.Join(stateDir, "netns"), os.ModeDir | 0o700},
		{filepath.Join(stateDir, "sandboxes", id+".json"), 0o600},
		{filepath.Join(s.CacheDir, "results", goodNetwork+"-"+id+"-eth0"), 0o600},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode() & (os.ModeType | os.ModePerm); got != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, got, c.want)
		}
		checked++
	}
	t.Logf("SUMMARY security: %d socket and state paths checked root-only", checked)
}

// TestStatusWarnsAboutUnsafePaths runs `cnishim status` against conf and bin dirs that users
// other than root can change, and checks that each such path gets a warning, and that none is
// given once they are root's alone.
func TestStatusWarnsAboutUnsafePaths(t *testing.T) {
	root := t.TempDir()
	conf := filepath.Join(root, "net.d")
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	plugin := plugintest.MustInstallAs(t, bin, "faulty")[0]
	confFile := filepath.Join(conf, "10-net.conflist")
	if err := os.WriteFile(confFile, []byte(conflist("1.0.0", "relstatus", `{"type": "faulty"}`)), 0o644); err != nil {
		t.Fatal(err)
	}

	status := func() []string {
		t.Helper()
		cmd := exec.Command(env.Cnishim, "status", "-o", "json", "--cni-conf-dir", conf, "--cni-bin-dir", bin,
			"--listen", "unix://"+filepath.Join(root, "no-server.sock"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("cnishim status: %v\n%s%s", err, stdout.String(), stderr.String())
		}
		var rep struct {
			Ready    bool     `json:"ready"`
			Warnings []string `json:"warnings"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("cnishim status: %v\n%s", err, stdout.String())
		}
		if !rep.Ready {
			t.Fatalf("cnishim status: not ready\n%s", stdout.String())
		}
		return rep.Warnings
	}
	if w := status(); len(w) != 0 {
		t.Fatalf("warnings for root-only paths: %q", w)
	}

	unsafe := []struct {
		path string
		mode os.FileMode
		uid  int
		want string
	}{
		{conf, 0o775, 0, fmt.Sprintf("CNI config directory %s is writable by group or others (mode 0775)", conf)},
		{confFile, 0o644, 1000, fmt.Sprintf("CNI config file %s is owned by uid 1000", confFile)},
		{bin, 0o757, 0, fmt.Sprintf("CNI plugin directory %s is writable by group or others (mode 0757)", bin)},
		{plugin, 0o755, 1000, fmt.Sprintf("CNI plugin %s is owned by uid 1000", plugin)},
	}
	for _, u := range unsafe {
		if err := os.Chmod(u.path, u.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(u.path, u.uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	warnings := status()
	t.Logf("warnings: %q", warnings)
	for _, u := range unsafe {
		if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, u.want) }) {
			t.Errorf("no warning saying %q", u.want)
		}
	}
	if len(warnings) != len(unsafe) {
		t.Errorf("%d warnings, want %d (one per unsafe path)", len(warnings), len(unsafe))
	}
	t.Logf("SUMMARY security: %d unsafe conf/bin paths, %d warned about; 0 warnings for root-only paths", len(unsafe), len(warnings))
}

// secretEnv is an environment variable of the runtime's own that no plugin may see. Its
// CNITEST_ prefix makes the cnitest plugin record it whenever it is in its environment.
const secretEnv = "CNITEST_SECRET_TOKEN"

// envSpy installs the cnitest plugin as "envspy" in the node's bin dir, recording every
// invocation (VERSION included: the behavior file is the one beside the binary), and writes a
// cniVersion 1.1.0 network of it, so that ADD, CHECK, DEL, STATUS and GC all run. It returns
// the record file.
func envSpy(t *testing.T, n *node) string {
	t.Helper()
	bin := plugintest.MustInstallAs(t, n.binDir, "envspy")[0]
	rec := filepath.Join(n.dir, "envspy.records")
	plugintest.MustWriteBehavior(t, plugintest.SidecarPath(bin), plugintest.Behavior{Record: rec})
	n.writeConf("10-envspy.conflist", conflist("1.1.0", "relenv", `{"type": "envspy"}`))
	return rec
}

// seenSecret returns, per CNI command, how many invocations saw the secret and how many did not.
func seenSecret(t *testing.T, rec string) (saw, clean map[string]int) {
	t.Helper()
	saw, clean = map[string]int{}, map[string]int{}
	for _, r := range plugintest.MustReadRecords(t, rec) {
		if slices.ContainsFunc(r.Env, func(kv string) bool { return strings.HasPrefix(kv, secretEnv+"=") }) {
			saw[r.Command]++
		} else {
			clean[r.Command]++
		}
	}
	return saw, clean
}

// TestPluginEnvironment checks that plugins run with only the CNI variables and PATH, never
// the runtime's own environment, through the Plugin API and cnishim serve, for every command;
// and that the Plugin's pass-through option does hand them the whole environment (which is
// what shows the recording would see a leak).
func TestPluginEnvironment(t *testing.T) {
	t.Setenv(secretEnv, "s3cr3t")
	var tried, passed int

	run := func(t *testing.T, opts ...cninetwork.Option) (saw, clean map[string]int) {
		n := newNode(t)
		rec := envSpy(t, n)
		p := n.plugin(time.Minute, append([]cninetwork.Option{seam.StatusInterval(50 * time.Millisecond).(cninetwork.Option)}, opts...)...)
		framework.WaitDefault(t, p, "relenv")
		ctx := t.Context()
		pod := n.pod("env")
		if _, err := p.SetUpPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := p.CheckPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := p.TearDownPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		if err := p.GC(ctx, nil); err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, "a STATUS exec", func() string {
			saw, clean := seenSecret(t, rec)
			if saw["STATUS"]+clean["STATUS"] == 0 {
				return "no STATUS yet"
			}
			return ""
		})
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		saw, clean = seenSecret(t, rec)
		for _, cmd := range []string{"VERSION", "ADD", "CHECK", "DEL", "STATUS", "GC"} {
			if saw[cmd]+clean[cmd] == 0 {
				t.Errorf("no %s recorded: %v %v", cmd, saw, clean)
			}
		}
		return saw, clean
	}

	t.Run("Plugin API", func(t *testing.T) {
		saw, clean := run(t)
		if len(saw) > 0 {
			t.Errorf("plugins saw %s: %v", secretEnv, saw)
		}
		tried += sum(saw) + sum(clean)
		t.Logf("plugin execs without %s: %v", secretEnv, clean)
	})
	t.Run("Plugin API with pass-through", func(t *testing.T) {
		saw, clean := run(t, seam.PluginEnv(true).(cninetwork.Option))
		if len(clean) > 0 {
			t.Errorf("with pass-through, plugins did not see %s: %v", secretEnv, clean)
		}
		passed += sum(saw)
		t.Logf("plugin execs with %s: %v", secretEnv, saw)
	})
	t.Run("cnishim serve", func(t *testing.T) {
		n := newNode(t)
		rec := envSpy(t, n)
		s := startServer(t, n, serverOpts{timeout: time.Minute, env: []string{secretEnv + "=s3cr3t"}})
		ctx := t.Context()
		resp, err := s.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("env")})
		if err != nil {
			t.Fatal(err)
		}
		n.addNeedle(resp.GetPodSandboxId())
		if _, err := s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.GetPodSandboxId()}); err != nil {
			t.Fatal(err)
		}
		saw, clean := seenSecret(t, rec)
		for _, cmd := range []string{"VERSION", "ADD", "DEL"} {
			if clean[cmd] == 0 {
				t.Errorf("no %s recorded without the secret: %v", cmd, clean)
			}
		}
		if len(saw) > 0 {
			t.Errorf("plugins of cnishim serve saw %s: %v", secretEnv, saw)
		}
		tried += sum(saw) + sum(clean)
		t.Logf("plugin execs without %s: %v", secretEnv, clean)
	})
	t.Run("cnishim status", func(t *testing.T) {
		n := newNode(t)
		rec := envSpy(t, n)
		cmd := exec.Command(env.Cnishim, "status", "--cni-conf-dir", n.confDir, "--cni-bin-dir", n.binDir,
			"--listen", "unix://"+filepath.Join(n.dir, "no-server.sock"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cnishim status: %v\n%s", err, out)
		}
		saw, clean := seenSecret(t, rec)
		if clean["VERSION"] == 0 || len(saw) > 0 {
			t.Errorf("VERSION execs of cnishim status: %v without %s, %v with it; want only without", clean, secretEnv, saw)
		}
		tried += sum(saw) + sum(clean)
	})
	t.Logf("SUMMARY security: %d plugin execs (VERSION, ADD, CHECK, DEL, STATUS, GC) by the Plugin API, cnishim serve and cnishim status with %s set in the runtime's environment, 0 saw it; with the pass-through option %d of %d did",
		tried, secretEnv, passed, passed)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
