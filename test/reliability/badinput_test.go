//go:build linux

package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"
	"github.com/cnishim/cnishim/pkg/npwg"
	"github.com/cnishim/cnishim/test/framework"
)

// Networks of the bad-input test.
// maxConfigSize is the largest configuration file confwatch reads.
const maxConfigSize = 1 << 20

const (
	goodNetwork  = "relgood"
	extraNetwork = "relextra"
)

// badEnv is what a bad input is handed to: a Plugin and a cnishim serve process watching the
// same conf dir, whose default network is a real bridge + host-local + portmap chain.
type badEnv struct {
	n *node
	p *cninetwork.Plugin
	s *server
}

// badInput is one bad input. try hands it over and returns the error the user sees.
type badInput struct {
	name string
	// via is where the input enters: "conf dir", "Plugin API" or "CRI".
	via string
	try func(t *testing.T, e *badEnv) error
	// want is a stable substring of the error.
	want string
	// is, if set, is a sentinel the error must wrap.
	is error
	// code is the gRPC code of a CRI error.
	code codes.Code
	// ok: the input is harmless rather than refused; the call must succeed and change
	// nothing.
	ok bool
}

const (
	viaConf = "conf dir"
	viaAPI  = "Plugin API"
	viaCRI  = "CRI"
)

// TestBadInput hands every bad input a runtime or a node can give to the conf dir, the Plugin
// API and the CRI server, and checks the exact error the user sees and that nothing was created
// or lost: no IP, veth, netns, cache entry, rule or sandbox record appears, the default
// network stays selected, and a pod that was up stays up.
func TestBadInput(t *testing.T) {
	n := newNode(t)
	n.installFaulty()
	n.writeConf("10-good.conflist", conflist("1.0.0", goodNetwork, n.bridgePlugin(),
		`{"type": "portmap", "capabilities": {"portMappings": true}}`))
	n.writeConf("20-extra.conflist", conflist("1.0.0", extraNetwork, `{"type": "faulty"}`))
	e := &badEnv{n: n, p: n.plugin(time.Minute), s: startServer(t, n, serverOpts{timeout: time.Minute})}
	framework.WaitDefault(t, e.p, goodNetwork)
	e.waitServerDefault(t)

	var rows []badInput
	rows = append(rows, confRows()...)
	rows = append(rows, apiRows()...)
	rows = append(rows, criRows()...)

	counts := map[string]int{}
	lost := 0
	for _, r := range rows {
		t.Run(r.via+"/"+r.name, func(t *testing.T) {
			before := e.state(t)
			err := r.try(t, e)
			after := e.state(t)
			lost += e.compare(t, before, after)
			if r.ok {
				if err != nil {
					t.Fatalf("got %v, want success that changes nothing", err)
				}
				counts[r.via]++
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error saying %q", r.want)
			}
			msg := err.Error()
			if st, ok := status.FromError(err); ok && r.via == viaCRI {
				msg = st.Message()
				if st.Code() != r.code {
					t.Errorf("gRPC code %v, want %v", st.Code(), r.code)
				}
			}
			t.Logf("error: %q", msg)
			// A clear error is printable: a raw newline or NUL from the input would forge or
			// cut lines in whatever logs or shows it.
			if strings.ContainsFunc(msg, unicode.IsControl) {
				t.Errorf("error holds control characters: %q", msg)
			}
			if !strings.Contains(msg, r.want) {
				t.Errorf("error does not say %q", r.want)
			}
			if r.is != nil && !errors.Is(err, r.is) {
				t.Errorf("error does not wrap %v", r.is)
			}
			if strings.Contains(msg, "rollback") {
				t.Errorf("the rollback failed: %s", msg)
			}
			counts[r.via]++
		})
	}
	// Portmap rules are read once, after the whole table (they are slow to read): none may
	// name a sandbox ID the test used.
	lost += framework.CheckNoLeaks(t, "rules", leakcheck.State{}, leakcheck.Take(n.ruleScope()))
	t.Logf("SUMMARY bad input: %d inputs refused or ignored (%d in the conf dir, %d through the Plugin API, %d through the CRI); lost or left behind: %d",
		counts[viaConf]+counts[viaAPI]+counts[viaCRI], counts[viaConf], counts[viaAPI], counts[viaCRI], lost)
}

// badState is everything a bad input must not change.
type badState struct {
	apiLeaks    leakcheck.State
	serverLeaks leakcheck.State
	defaultNet  string // file and digest of the Plugin's default network
	networks    int
	serverConf  string // the server's chosen network, from its verbose status
	sandboxes   []string
	records     []string
}

func (e *badEnv) state(t *testing.T) badState {
	t.Helper()
	snap := e.p.Snapshot()
	st := badState{
		apiLeaks:    leakcheck.Take(e.n.scope("", e.n.cacheDir)),
		serverLeaks: leakcheck.Take(e.n.scope(filepath.Join(e.s.StateDir, "netns"), e.s.CacheDir)),
		networks:    len(snap.Networks),
		records:     e.s.SandboxFiles(),
	}
	if snap.Default != nil {
		st.defaultNet = snap.Default.File + " " + snap.Default.Digest
	}
	info := e.serverInfo(t)
	st.serverConf = info["config"]
	ids, err := e.s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.sandboxes = ids
	return st
}

// compare fails the test for every difference between two states and returns their number.
func (e *badEnv) compare(t *testing.T, before, after badState) int {
	t.Helper()
	lost := 0
	lost += framework.CheckNoLeaks(t, "Plugin API", before.apiLeaks, after.apiLeaks)
	lost += framework.CheckNoLeaks(t, "cnishim serve", before.serverLeaks, after.serverLeaks)
	for _, c := range []struct {
		what          string
		before, after any
	}{
		{"default network", before.defaultNet, after.defaultNet},
		{"valid networks", before.networks, after.networks},
		{"server's network", before.serverConf, after.serverConf},
		{"sandboxes", before.sandboxes, after.sandboxes},
		{"sandbox records", before.records, after.records},
	} {
		if fmt.Sprint(c.before) != fmt.Sprint(c.after) {
			t.Errorf("%s changed: %v, then %v", c.what, c.before, c.after)
			lost++
		}
	}
	if before.defaultNet == "" || before.serverConf == "" {
		t.Errorf("no default network before the input: %q / %q", before.defaultNet, before.serverConf)
	}
	return lost
}

// serverInfo returns the server's verbose status info.
func (e *badEnv) serverInfo(t *testing.T) map[string]string {
	t.Helper()
	// Not t.Context(): this also runs at cleanup, when that is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := e.s.RT.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetInfo()
}

func (e *badEnv) waitServerDefault(t *testing.T) {
	t.Helper()
	framework.Eventually(t, "server's default network", func() string {
		if !strings.Contains(e.serverInfo(t)["config"], `"name":"`+goodNetwork+`"`) {
			return fmt.Sprint(e.serverInfo(t))
		}
		return ""
	})
}

// badConfig puts a bad configuration file into the conf dir with write (which gets its path),
// waits until the Plugin's watcher and the server have both skipped it, checks they give the
// same reason, and returns that reason. At the end of the test the file is removed again and
// both forget it.
func (e *badEnv) badConfig(t *testing.T, file string, write func(path string) error) error {
	t.Helper()
	path := filepath.Join(e.n.confDir, file)
	if err := write(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
		framework.Eventually(t, "bad config forgotten", func() string {
			if skipped(e.p.Snapshot(), path) != nil {
				return "the Plugin still lists it"
			}
			var sk map[string]string
			_ = json.Unmarshal([]byte(e.serverInfo(t)["skipped"]), &sk)
			if _, ok := sk[path]; ok {
				return "the server still lists it"
			}
			return ""
		})
	})
	var reason error
	framework.Eventually(t, "bad config skipped", func() string {
		if reason = skipped(e.p.Snapshot(), path); reason == nil {
			return "the Plugin's snapshot does not list it as skipped"
		}
		var sk map[string]string
		if err := json.Unmarshal([]byte(e.serverInfo(t)["skipped"]), &sk); err != nil {
			return err.Error()
		}
		if sk[path] == "" {
			return "the server does not list it as skipped"
		}
		if sk[path] != reason.Error() {
			return fmt.Sprintf("the server says %q, the Plugin %q", sk[path], reason)
		}
		return ""
	})
	return reason
}

func skipped(s *confwatch.Snapshot, path string) error {
	for _, sk := range s.Skipped {
		if sk.File == path {
			return sk.Reason
		}
	}
	return nil
}

// writeFile returns a writer of body for badConfig.
func writeFile(body string) func(string) error {
	return func(p string) error { return os.WriteFile(p, []byte(body), 0o644) }
}

// confRows are bad configuration files. Each sorts before the valid default network's file,
// so it would become the default if it were accepted.
func confRows() []badInput {
	conf := func(name, file, body, want string) badInput {
		return badInput{name: name, via: viaConf, want: want, try: func(t *testing.T, e *badEnv) error {
			return e.badConfig(t, file, writeFile(body))
		}}
	}
	big := `{"cniVersion": "1.0.0", "name": "relbig", "plugins": [{"type": "bridge"}], "pad": "` +
		strings.Repeat("x", maxConfigSize) + `"}`
	return []badInput{
		conf("invalid JSON", "00-invalid.conflist", `{"cniVersion": "1.0.0", "name": "relinvalid", "plugins": [`,
			"unexpected end of JSON input"),
		conf("no name", "00-noname.conflist", `{"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}`,
			"no name"),
		conf("no plugins", "00-noplugins.conflist", `{"cniVersion": "1.0.0", "name": "relnoplugins", "plugins": []}`,
			"no plugins"),
		conf("type with a path separator", "00-pathtype.conflist", `{"cniVersion": "1.0.0", "name": "relpath", "plugins": [{"type": "../../../usr/bin/true"}]}`,
			`plugin type "../../../usr/bin/true" is not a bare binary name`),
		conf("type an absolute path (.conf)", "00-abstype.conf", `{"cniVersion": "1.0.0", "name": "relabs", "type": "/usr/bin/true"}`,
			`plugin type "/usr/bin/true" is not a bare binary name`),
		conf("unknown cniVersion", "00-version.conflist", `{"cniVersion": "9.9.9", "name": "relversion", "plugins": [{"type": "bridge"}]}`,
			`9.9.9`),
		conf("file over 1 MiB", "00-big.conflist", big,
			fmt.Sprintf("larger than the %d-byte limit", maxConfigSize)),
		{name: "symlink to itself", via: viaConf, want: "symlink loop", try: func(t *testing.T, e *badEnv) error {
			return e.badConfig(t, "00-loop.conflist", func(p string) error { return os.Symlink(p, p) })
		}},
		{name: "symlink loop of two", via: viaConf, want: "symlink loop", try: func(t *testing.T, e *badEnv) error {
			other := filepath.Join(e.n.dir, "loop-other")
			return e.badConfig(t, "00-loop2.conflist", func(p string) error {
				if err := os.Symlink(p, other); err != nil {
					return err
				}
				return os.Symlink(other, p)
			})
		}},
	}
}

// setUp runs SetUpPod on pod through the Plugin API; if it succeeds (it must not), the pod is
// torn down again so the failure is reported once.
func (e *badEnv) setUp(t *testing.T, pod *cninetwork.Pod) error {
	t.Helper()
	ctx, cancel := framework.CallContext(t)
	defer cancel()
	_, err := e.p.SetUpPod(ctx, pod)
	if err == nil {
		if terr := e.p.TearDownPod(ctx, pod); terr != nil {
			t.Errorf("tear down the wrongly accepted pod: %v", terr)
		}
		return nil
	}
	if _, serr := e.p.GetPodNetworkStatus(ctx, pod); !errors.Is(serr, cninetwork.ErrUnknownSandbox) && !errors.Is(serr, cninetwork.ErrInvalidPod) {
		t.Errorf("status of the refused pod: %v, want ErrUnknownSandbox", serr)
	}
	return err
}

// apiPod returns a pod with a fresh netns, changed by mod, whose netns is removed after the row.
func (e *badEnv) apiPod(t *testing.T, mod func(*cninetwork.Pod)) *cninetwork.Pod {
	t.Helper()
	pod := e.n.pod("bad")
	netnsPath := pod.NetNS
	t.Cleanup(func() { e.n.removeNetns(netnsPath) })
	if mod != nil {
		mod(pod)
	}
	return pod
}

// fieldRows are the rows of a pod name, namespace or UID holding a character CNI_ARGS cannot
// carry, through via.
func fieldRows(via string, try func(field, value string) func(*testing.T, *badEnv) error) []badInput {
	var out []badInput
	for _, field := range []string{"name", "namespace", "UID"} {
		for _, c := range []struct{ label, char string }{{";", ";"}, {"=", "="}, {"NUL", "\x00"}, {"newline", "\n"}} {
			value := "bad" + c.char + "value"
			want := fmt.Sprintf("%s %q contains %q, which CNI_ARGS cannot carry", field, value, c.char[0])
			row := badInput{
				name: fmt.Sprintf("pod %s with %s", field, c.label), via: via, want: want,
				code: codes.InvalidArgument, try: try(field, value),
			}
			if via == viaAPI {
				row.is = cninetwork.ErrInvalidPod
			}
			out = append(out, row)
		}
	}
	return out
}

func apiRows() []badInput {
	api := func(name, want string, is error, mod func(*cninetwork.Pod)) badInput {
		return badInput{name: name, via: viaAPI, want: want, is: is, try: func(t *testing.T, e *badEnv) error {
			return e.setUp(t, e.apiPod(t, mod))
		}}
	}
	ports := func(pm ...cninetwork.PortMapping) func(*cninetwork.Pod) {
		return func(p *cninetwork.Pod) { p.PortMappings = pm }
	}
	annotations := func(kv ...string) func(*cninetwork.Pod) {
		return func(p *cninetwork.Pod) {
			p.Annotations = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				p.Annotations[kv[i]] = kv[i+1]
			}
		}
	}
	extra := func(x ...cninetwork.NetworkSelection) func(*cninetwork.Pod) {
		return func(p *cninetwork.Pod) { p.ExtraNetworks = x }
	}
	rows := []badInput{
		api("no netns path", "no netns path", cninetwork.ErrInvalidPod, func(p *cninetwork.Pod) { p.NetNS = "" }),
		api("missing netns path", "file does not exist", os.ErrNotExist, func(p *cninetwork.Pod) { p.NetNS = "/run/cnishim-reliability/no-such-netns" }),
		{name: "netns path is a regular file", via: viaAPI, want: "not a network namespace", is: cninetwork.ErrInvalidPod, try: func(t *testing.T, e *badEnv) error {
			f := filepath.Join(t.TempDir(), "not-a-netns")
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return e.setUp(t, e.apiPod(t, func(p *cninetwork.Pod) { p.NetNS = f }))
		}},
		api("netns path is a mount namespace", "not a network namespace", cninetwork.ErrInvalidPod, func(p *cninetwork.Pod) { p.NetNS = "/proc/self/ns/mnt" }),
		api("netns path is a procfs file", "not a network namespace", cninetwork.ErrInvalidPod, func(p *cninetwork.Pod) { p.NetNS = "/proc/self/status" }),
		api("invalid bandwidth quantity", `annotation kubernetes.io/ingress-bandwidth="10Mbit"`, cninetwork.ErrInvalidPod,
			annotations("kubernetes.io/ingress-bandwidth", "10Mbit")),
		api("bandwidth below the minimum", `annotation kubernetes.io/egress-bandwidth="500": below the minimum of 1k bits per second`, cninetwork.ErrInvalidPod,
			annotations("kubernetes.io/egress-bandwidth", "500")),
		api("bandwidth above the maximum", `annotation kubernetes.io/ingress-bandwidth="2P": above the maximum of 1P bits per second`, cninetwork.ErrInvalidPod,
			annotations("kubernetes.io/ingress-bandwidth", "2P")),
		api("duplicate extra-network interface name", `extra network "relextra": interface "net1" is already used by another network of the pod`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: extraNetwork, Interface: "net1"}, cninetwork.NetworkSelection{Name: extraNetwork, Interface: "net1"})),
		api("extra-network interface name eth0", `interface "eth0" is already used by another network of the pod`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: extraNetwork, Interface: "eth0"})),
		api("unknown extra network", `extra network "nosuchnet": no valid configuration`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: "nosuchnet"})),
		api("extra network with a bad port mapping", `extra network "relextra": port mapping 0: host port 0 out of range 1-65535`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: extraNetwork, PortMappings: []cninetwork.PortMapping{{ContainerPort: 80}}})),
		api("extra network with cni-args not an object", `extra network "relextra": cni-args: not a JSON object`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: extraNetwork, CNIArgs: json.RawMessage(`[1]`)})),
		api("extra network with a default-route that is not an IP", `extra network "relextra": default-route: "not-an-ip" is not an IP address`, cninetwork.ErrInvalidPod,
			extra(cninetwork.NetworkSelection{Name: extraNetwork, DefaultRoute: []string{"not-an-ip"}})),
		api("one network asked for 100 times", "asks for 101 networks, the default one included; this node allows at most 16 per pod", cninetwork.ErrInvalidPod,
			extra(slices.Repeat([]cninetwork.NetworkSelection{{Name: extraNetwork}}, 100)...)),
		api("port mapping with container port 0", "port mapping 0: container port 0 out of range 1-65535", cninetwork.ErrInvalidPod,
			ports(cninetwork.PortMapping{HostPort: 18080, ContainerPort: 0})),
		api("port mapping with host port over 65535", "port mapping 0: host port 65536 out of range 1-65535", cninetwork.ErrInvalidPod,
			ports(cninetwork.PortMapping{HostPort: 65536, ContainerPort: 80})),
		api("port mapping with container port over 65535", "port mapping 1: container port 70000 out of range 1-65535", cninetwork.ErrInvalidPod,
			ports(cninetwork.PortMapping{HostPort: 18081, ContainerPort: 80}, cninetwork.PortMapping{HostPort: 18082, ContainerPort: 70000})),
		api("port mapping with an unknown protocol", `port mapping 0: protocol "icmp" is not tcp, udp or sctp`, cninetwork.ErrInvalidPod,
			ports(cninetwork.PortMapping{HostPort: 18083, ContainerPort: 80, Protocol: "icmp"})),
		api("port mapping with a bad host IP", `port mapping 0: host IP "not-an-ip" is not an IP address`, cninetwork.ErrInvalidPod,
			ports(cninetwork.PortMapping{HostPort: 18084, ContainerPort: 80, HostIP: "not-an-ip"})),
		api("sandbox ID with a path", `sandbox ID "../../etc/x": invalid characters in containerID`, cninetwork.ErrInvalidPod,
			func(p *cninetwork.Pod) { p.SandboxID = "../../etc/x" }),
		{name: "empty sandbox ID", via: viaAPI, want: "sandbox ID is empty", is: cninetwork.ErrInvalidPod, try: func(t *testing.T, e *badEnv) error {
			pod := e.apiPod(t, func(p *cninetwork.Pod) { p.SandboxID = "" })
			ctx := t.Context()
			// Every operation refuses it, not only the set-up.
			for what, err := range map[string]error{
				"TearDownPod":         e.p.TearDownPod(ctx, pod),
				"CheckPod":            e.p.CheckPod(ctx, pod),
				"GetPodNetworkStatus": func() error { _, err := e.p.GetPodNetworkStatus(ctx, pod); return err }(),
			} {
				if !errors.Is(err, cninetwork.ErrInvalidPod) || !strings.Contains(fmt.Sprint(err), "sandbox ID is empty") {
					t.Errorf("%s: %v, want ErrInvalidPod saying the sandbox ID is empty", what, err)
				}
			}
			return e.setUp(t, pod)
		}},
		// A runtime tears down what it failed to set up: that must succeed for a pod the
		// set-up refused, or the runtime keeps a sandbox it can never remove.
		{name: "tear down a pod whose name CNI_ARGS cannot carry", via: viaAPI, ok: true, try: func(t *testing.T, e *badEnv) error {
			pod := e.apiPod(t, func(p *cninetwork.Pod) { p.Name = "bad;value" })
			if err := e.setUp(t, pod); !errors.Is(err, cninetwork.ErrInvalidPod) {
				t.Errorf("set-up: %v, want ErrInvalidPod", err)
			}
			return e.p.TearDownPod(t.Context(), pod)
		}},
		{name: "sandbox ID reused while the first is up", via: viaAPI, want: "sandbox is already set up; tear it down first", is: cninetwork.ErrInvalidPod,
			try: func(t *testing.T, e *badEnv) error { return e.reuseSandboxID(t) }},
	}
	return append(rows, fieldRows(viaAPI, func(field, value string) func(*testing.T, *badEnv) error {
		return func(t *testing.T, e *badEnv) error {
			err := e.setUp(t, e.apiPod(t, func(p *cninetwork.Pod) { setPodField(p, field, value) }))
			var fe *cniargs.FieldError
			if !errors.As(err, &fe) || fe.Field != field || fe.Value != value {
				t.Errorf("want a *cniargs.FieldError for %s %q in the chain, got %#v", field, value, fe)
			}
			return err
		}
	})...)
}

func setPodField(p *cninetwork.Pod, field, value string) {
	switch field {
	case "name":
		p.Name = value
	case "namespace":
		p.Namespace = value
	case "UID":
		p.UID = value
	}
}

// reuseSandboxID sets up a pod, then tries to set up another pod (its own netns and name) with
// the same sandbox ID: through the same Plugin, and through a new Plugin on the same cache (a
// restarted runtime). Both must refuse, and the first pod must keep its network; it is torn down
// at the end. It returns the first refusal.
func (e *badEnv) reuseSandboxID(t *testing.T) error {
	ctx := t.Context()
	first := e.apiPod(t, nil)
	st, err := e.p.SetUpPod(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	second := e.apiPod(t, func(p *cninetwork.Pod) { p.SandboxID, p.Name = first.SandboxID, "bad-second" })
	_, refused := e.p.SetUpPod(ctx, second)

	restarted := e.n.plugin(time.Minute)
	framework.WaitDefault(t, restarted, goodNetwork)
	_, err = restarted.SetUpPod(ctx, second)
	t.Logf("after a restart: %v", err)
	if !errors.Is(err, cninetwork.ErrInvalidPod) || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("sandbox is already set up (network %q, interface eth0)", goodNetwork)) {
		t.Errorf("set-up of a reused sandbox ID after a restart: %v, want ErrInvalidPod saying it is set up", err)
	}
	if err := restarted.Close(); err != nil {
		t.Error(err)
	}

	got, err := e.p.GetPodNetworkStatus(ctx, first)
	if err != nil || !slices.EqualFunc(got.IPs, st.IPs, func(a, b net.IP) bool { return a.Equal(b) }) {
		t.Errorf("the first pod's status changed: %+v, %v; want %+v", got, err, st)
	}
	if ports, _ := leakcheck.BridgePorts(e.n.bridge); len(ports) != 1 {
		t.Errorf("bridge ports %v, want the first pod's veth", ports)
	}
	if err := e.p.TearDownPod(ctx, first); err != nil {
		t.Fatal(err)
	}
	return refused
}

// runSandbox runs a sandbox through the server; if it succeeds (it must not), the sandbox is
// removed again so the failure is reported once.
func (e *badEnv) runSandbox(t *testing.T, cfg *runtimeapi.PodSandboxConfig) error {
	t.Helper()
	ctx, cancel := framework.CallContext(t)
	defer cancel()
	resp, err := e.s.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err == nil {
		e.n.addNeedle(resp.GetPodSandboxId())
		if _, rerr := e.s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.GetPodSandboxId()}); rerr != nil {
			t.Errorf("remove the wrongly accepted sandbox: %v", rerr)
		}
	}
	return err
}

func criRows() []badInput {
	cri := func(name, want string, code codes.Code, mod func(*runtimeapi.PodSandboxConfig)) badInput {
		return badInput{name: name, via: viaCRI, want: want, code: code, try: func(t *testing.T, e *badEnv) error {
			cfg := podConfig("bad")
			mod(cfg)
			return e.runSandbox(t, cfg)
		}}
	}
	ports := func(pm ...*runtimeapi.PortMapping) func(*runtimeapi.PodSandboxConfig) {
		return func(c *runtimeapi.PodSandboxConfig) { c.PortMappings = pm }
	}
	networks := func(v string) func(*runtimeapi.PodSandboxConfig) {
		return func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{npwg.NetworksAnnotation: v}
		}
	}
	rows := []badInput{
		cri("no metadata name", "config has no metadata name", codes.InvalidArgument, func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }),
		cri("invalid bandwidth quantity", `annotation kubernetes.io/ingress-bandwidth="10Mbit"`, codes.InvalidArgument,
			func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "10Mbit"}
			}),
		cri("port mapping with container port 0", "port mapping 0: container port 0 out of range 1-65535", codes.InvalidArgument,
			ports(&runtimeapi.PortMapping{HostPort: 18080, ContainerPort: 0})),
		cri("networks annotation with an empty element", "network selection element 1 (): empty element", codes.InvalidArgument, networks(extraNetwork+",,")),
		cri("networks annotation of malformed JSON", "network selection: JSON list: unexpected EOF", codes.InvalidArgument, networks(`[{"name":"x"`)),
		cri("networks annotation with an unknown field", `json: unknown field "infiniband-guid"`, codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","infiniband-guid":"x"}]`)),
		cri("networks annotation naming an unknown network", `extra network "nosuchnet": no valid configuration`, codes.InvalidArgument, networks("nosuchnet")),
		cri("networks annotation naming another namespace", `namespace "other": only the pod's own namespace or "default"`, codes.InvalidArgument,
			networks("other/"+extraNetwork)),
		cri("networks annotation asking for eth0", `interface "eth0" is already used by another network of the pod`, codes.InvalidArgument,
			networks(extraNetwork+"@eth0")),
		cri("networks annotation asking for lo", `interface "lo" is already used by another network of the pod`, codes.InvalidArgument,
			networks(extraNetwork+"@lo")),
		cri("networks annotation with one interface twice", `interface "net1" is already used by another network of the pod`, codes.InvalidArgument,
			networks(extraNetwork+"@net1,"+extraNetwork+"@net1")),
		cri("networks annotation with a bad interface name", `interface "a/b"`, codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","interface":"a/b"}]`)),
		cri("networks annotation with a bad IP", `ips: "10.0.0.300" is not an IP address`, codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","ips":["10.0.0.300"]}]`)),
		cri("networks annotation with a bad MAC", `mac: "zz" is not a 48-bit MAC address`, codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","mac":"zz"}]`)),
		cri("networks annotation with cni-args not an object", "cni-args: not a JSON object", codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","cni-args":"x"}]`)),
		cri("networks annotation with two IPv4 default routes", `default-route 10.0.0.2: the IPv4 default route is already asked of network "relextra"`, codes.InvalidArgument,
			networks(`[{"name":"`+extraNetwork+`","interface":"net1","default-route":["10.0.0.1"]},{"name":"`+extraNetwork+`","interface":"net2","default-route":["10.0.0.2"]}]`)),
		cri("networks annotation with a newline in a name", `network name "a\nb"`, codes.InvalidArgument,
			networks(`[{"name":"a\nb"}]`)),
		cri("networks annotation naming one network 100 times", "asks for 101 networks, the default one included; this node allows at most 16 per pod", codes.InvalidArgument,
			networks(strings.Repeat(extraNetwork+",", 99)+extraNetwork)),
		cri("port mapping with host port over 65535", "port mapping 0: host port 65536 out of range 1-65535", codes.InvalidArgument,
			ports(&runtimeapi.PortMapping{HostPort: 65536, ContainerPort: 80})),
		cri("port mapping with an unknown protocol", "port mapping 0: unknown protocol 7 (want TCP, UDP or SCTP)", codes.InvalidArgument,
			ports(&runtimeapi.PortMapping{HostPort: 18083, ContainerPort: 80, Protocol: runtimeapi.Protocol(7)})),
		// The CRI asks that stopping an unknown sandbox succeed; an empty ID matches none.
		{name: "stop an empty sandbox ID while one is up", via: viaCRI, ok: true, try: func(t *testing.T, e *badEnv) error {
			return e.withSandboxUp(t, func(string) error {
				_, err := e.s.RT.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: ""})
				return err
			})
		}},
		{name: "status of an empty sandbox ID", via: viaCRI, want: "pod sandbox not found: empty ID", code: codes.NotFound, try: func(t *testing.T, e *badEnv) error {
			_, err := e.s.RT.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: ""})
			return err
		}},
		// The CRI asks that removing an unknown sandbox succeed; an empty ID matches none
		// (it is not the prefix of every ID).
		{name: "remove an empty sandbox ID while one is up", via: viaCRI, ok: true, try: func(t *testing.T, e *badEnv) error {
			return e.withSandboxUp(t, func(string) error {
				_, err := e.s.RT.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: ""})
				return err
			})
		}},
		{name: "same pod again while the first is up", via: viaCRI, want: "pod sandbox name is reserved", code: codes.AlreadyExists, try: func(t *testing.T, e *badEnv) error {
			return e.withSandboxUp(t, func(id string) error {
				err := e.runSandbox(t, podConfig("up"))
				if !strings.Contains(fmt.Sprint(err), "is held by sandbox "+id) {
					t.Errorf("error does not name the sandbox holding the name (%s): %v", id, err)
				}
				return err
			})
		}},
	}
	return append(rows, fieldRows(viaCRI, func(field, value string) func(*testing.T, *badEnv) error {
		return func(t *testing.T, e *badEnv) error {
			cfg := podConfig("bad")
			switch field {
			case "name":
				cfg.Metadata.Name = value
			case "namespace":
				cfg.Metadata.Namespace = value
			case "UID":
				cfg.Metadata.Uid = value
			}
			return e.runSandbox(t, cfg)
		}
	})...)
}

// withSandboxUp runs a sandbox "up", calls try with its ID, checks that the sandbox is still
// ready with the same IP, then removes it.
func (e *badEnv) withSandboxUp(t *testing.T, try func(id string) error) error {
	t.Helper()
	ctx := t.Context()
	resp, err := e.s.RT.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("up")})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetPodSandboxId()
	e.n.addNeedle(id)
	before, err := e.s.RT.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	tryErr := try(id)
	after, err := e.s.RT.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("the sandbox that was up: %v", err)
	}
	if after.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY ||
		after.GetStatus().GetNetwork().GetIp() == "" ||
		after.GetStatus().GetNetwork().GetIp() != before.GetStatus().GetNetwork().GetIp() {
		t.Errorf("the sandbox that was up changed: %v, then %v", before.GetStatus(), after.GetStatus())
	}
	if _, err := e.s.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	return tryErr
}
