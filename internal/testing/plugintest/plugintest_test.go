package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// fixture is a bin dir with the plugin installed as "main" and "fakeipam", and a record file.
type fixture struct {
	bin, record string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{bin: filepath.Join(dir, "bin"), record: filepath.Join(dir, "record.jsonl")}
	MustInstallAs(t, f.bin, "main", "fakeipam")
	return f
}

func (f fixture) behave(t *testing.T, name string, b Behavior) {
	t.Helper()
	if b.Record == "" {
		b.Record = f.record
	}
	MustWriteBehavior(t, SidecarPath(filepath.Join(f.bin, name)), b)
}

func (f fixture) args(cmd string) *invoke.Args {
	return &invoke.Args{Command: cmd, ContainerID: "ctr1", NetNS: "/var/run/netns/none", IfName: "eth0", Path: f.bin, PluginArgs: [][2]string{{"K8S_POD_NAME", "p"}}}
}

func netconf(version string, extra map[string]any) []byte {
	m := map[string]any{"cniVersion": version, "name": "n", "type": "main"}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

func (f fixture) add(ctx context.Context, conf []byte) (*current.Result, error) {
	r, err := invoke.ExecPluginWithResult(ctx, filepath.Join(f.bin, "main"), conf, f.args("ADD"), nil)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(r)
}

func TestVersion(t *testing.T) {
	f := newFixture(t)
	vi, err := invoke.GetVersionInfo(t.Context(), filepath.Join(f.bin, "main"), nil)
	if err != nil || !slices.Contains(vi.SupportedVersions(), "1.1.0") || !slices.Contains(vi.SupportedVersions(), "0.3.1") {
		t.Fatalf("default VERSION = %v, %v", vi, err)
	}
	f.behave(t, "main", Behavior{Versions: []string{"0.4.0", "1.0.0"}})
	vi, err = invoke.GetVersionInfo(t.Context(), filepath.Join(f.bin, "main"), nil)
	if err != nil || !slices.Equal(vi.SupportedVersions(), []string{"0.4.0", "1.0.0"}) {
		t.Fatalf("VERSION with versions = %v, %v", vi, err)
	}
	if vi, err := invoke.GetVersionInfo(t.Context(), filepath.Join(f.bin, "fakeipam"), nil); err != nil || len(vi.SupportedVersions()) < 5 {
		t.Fatalf("another name's VERSION = %v, %v; behavior files must be per binary", vi, err)
	}
	rec := MustReadRecords(t, f.record)
	if len(rec) != 1 || rec[0].Command != "VERSION" || rec[0].Call != 1 || !strings.Contains(rec[0].Stdin, "cniVersion") {
		t.Fatalf("records = %+v", rec)
	}
}

func TestVersionMisbehaves(t *testing.T) {
	f := newFixture(t)
	f.behave(t, "main", Behavior{Commands: map[string]Action{"VERSION": {Do: Garbage}}})
	if _, err := invoke.GetVersionInfo(t.Context(), filepath.Join(f.bin, "main"), nil); err == nil {
		t.Fatal("garbage VERSION decoded")
	}
	f.behave(t, "main", Behavior{Commands: map[string]Action{"VERSION": {Do: Error, Code: 11, Msg: "try later"}}})
	_, err := invoke.GetVersionInfo(t.Context(), filepath.Join(f.bin, "main"), nil)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != 11 || te.Msg != "try later" {
		t.Fatalf("VERSION error = %v", err)
	}
}

func TestAddResults(t *testing.T) {
	zero := 0
	prev := map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": "cni0"}},
		"ips": []any{map[string]any{"address": "10.88.0.9/16", "interface": 0}}}
	tests := []struct {
		name    string
		version string
		extra   map[string]any
		action  Action
		check   func(t *testing.T, r *current.Result)
	}{{
		name:    "default: one interface in the netns",
		version: "1.0.0",
		check: func(t *testing.T, r *current.Result) {
			if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Sandbox != "/var/run/netns/none" || len(r.IPs) != 0 {
				t.Errorf("result = %+v", r)
			}
		},
	}, {
		name:    "given IPs and interfaces, as 0.4.0",
		version: "0.4.0",
		action: Action{Interfaces: []Interface{{Name: "eth0", Sandbox: "/ns"}},
			IPs: []IP{{Address: "10.88.0.5/16", Gateway: "10.88.0.1", Interface: &zero}, {Address: "fd00::5/64"}}},
		check: func(t *testing.T, r *current.Result) {
			if len(r.IPs) != 2 || r.IPs[0].Address.String() != "10.88.0.5/16" || r.IPs[0].Gateway.String() != "10.88.0.1" || *r.IPs[0].Interface != 0 || r.IPs[1].Address.String() != "fd00::5/64" {
				t.Errorf("result = %+v", r)
			}
		},
	}, {
		name:    "prevResult passed through",
		version: "1.0.0",
		extra:   map[string]any{"prevResult": prev},
		check: func(t *testing.T, r *current.Result) {
			if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.88.0.9/16" || r.Interfaces[0].Name != "cni0" {
				t.Errorf("result = %+v", r)
			}
		},
	}, {
		name:    "verbatim result",
		version: "1.1.0",
		action:  Action{Result: json.RawMessage(`{"cniVersion":"1.1.0","ips":[{"address":"10.99.0.2/24","interface":5}]}`)},
		check: func(t *testing.T, r *current.Result) {
			if len(r.IPs) != 1 || *r.IPs[0].Interface != 5 {
				t.Errorf("result = %+v", r)
			}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": tc.action}})
			r, err := f.add(t.Context(), netconf(tc.version, tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestAddMisbehaves(t *testing.T) {
	tests := []struct {
		name   string
		action Action
		check  func(t *testing.T, err error)
	}{
		{"exit", Action{Do: Exit, ExitCode: 3}, func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "netplugin failed") {
				t.Errorf("err = %v", err)
			}
		}},
		{"garbage", Action{Do: Garbage}, func(t *testing.T, err error) {
			if err == nil {
				t.Error("garbage decoded")
			}
		}},
		{"truncated", Action{Do: Truncated}, func(t *testing.T, err error) {
			if err == nil {
				t.Error("truncated result decoded")
			}
		}},
		{"error", Action{Do: Error, Code: 7, Msg: "no addresses", Details: "pool empty"}, func(t *testing.T, err error) {
			var te *types.Error
			if !errors.As(err, &te) || te.Code != 7 || te.Msg != "no addresses" || te.Details != "pool empty" {
				t.Errorf("err = %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": tc.action}})
			_, err := f.add(t.Context(), netconf("1.0.0", nil))
			tc.check(t, err)
		})
	}
}

func TestHangIsKilledAtTheDeadline(t *testing.T) {
	f := newFixture(t)
	f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": {Do: Hang}}})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := f.add(ctx, netconf("1.0.0", nil)); err == nil || ctx.Err() == nil {
		t.Fatalf("hang returned %v with ctx %v", err, ctx.Err())
	}
}

func TestSleepThenSucceed(t *testing.T) {
	f := newFixture(t)
	f.behave(t, "main", Behavior{Commands: map[string]Action{"DEL": {SleepMS: 50}}})
	start := time.Now()
	if err := invoke.ExecPluginWithoutResult(t.Context(), filepath.Join(f.bin, "main"), netconf("1.0.0", nil), f.args("DEL"), nil); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("DEL returned before its sleep")
	}
}

func TestOnCallAndRecord(t *testing.T) {
	f := newFixture(t)
	f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": {Do: Error, Code: 11, OnCall: 2}}})
	var errs []bool
	for range 3 {
		_, err := f.add(t.Context(), netconf("1.0.0", map[string]any{"x": "y"}))
		errs = append(errs, err != nil)
	}
	if !slices.Equal(errs, []bool{false, true, false}) {
		t.Fatalf("failures by call = %v, want only the second", errs)
	}
	rec := MustReadRecords(t, f.record)
	if len(rec) != 3 {
		t.Fatalf("%d records, want 3", len(rec))
	}
	for i, r := range rec {
		if r.Command != "ADD" || r.Call != i+1 || !strings.Contains(r.Stdin, `"x":"y"`) || r.PID == 0 ||
			!slices.Contains(r.Env, "CNI_CONTAINERID=ctr1") || !slices.Contains(r.Env, "CNI_ARGS=K8S_POD_NAME=p") {
			t.Errorf("record %d = %+v", i, r)
		}
	}
}

func TestBehaviorFromConfigAndEnv(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	inConf, inEnv := filepath.Join(dir, "conf.json"), filepath.Join(dir, "env.json")
	MustWriteBehavior(t, inConf, Behavior{Commands: map[string]Action{"ADD": {Do: Error, Code: 21}}})
	MustWriteBehavior(t, inEnv, Behavior{Commands: map[string]Action{"ADD": {Do: Error, Code: 22}}})
	f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": {Do: Error, Code: 23}}})
	code := func(conf []byte) uint {
		var te *types.Error
		if _, err := f.add(t.Context(), conf); !errors.As(err, &te) {
			t.Fatalf("err = %v", err)
		}
		return te.Code
	}
	if c := code(netconf("1.0.0", map[string]any{"behavior": inConf})); c != 21 {
		t.Errorf("config key: code %d", c)
	}
	t.Setenv("CNITEST_BEHAVIOR_FILE", inEnv)
	if c := code(netconf("1.0.0", nil)); c != 22 {
		t.Errorf("env: code %d", c)
	}
	t.Setenv("CNITEST_BEHAVIOR_FILE", "")
	if c := code(netconf("1.0.0", nil)); c != 23 {
		t.Errorf("sidecar: code %d", c)
	}
}

// TestDelegateIPAM checks the reliability tests' building block: the plugin allocates through
// its IPAM plugin, then fails.
func TestDelegateIPAM(t *testing.T) {
	f := newFixture(t)
	ipamRecord := filepath.Join(t.TempDir(), "ipam.jsonl")
	MustWriteBehavior(t, SidecarPath(filepath.Join(f.bin, "fakeipam")), Behavior{Record: ipamRecord,
		Commands: map[string]Action{"ADD": {IPs: []IP{{Address: "10.99.0.7/24"}}}}})
	conf := netconf("1.0.0", map[string]any{"ipam": map[string]any{"type": "fakeipam"}})

	f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": {DelegateIPAM: true}, "DEL": {DelegateIPAM: true, Do: Exit}}})
	r, err := f.add(t.Context(), conf)
	if err != nil || len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.99.0.7/24" {
		t.Fatalf("ADD through IPAM = %+v, %v", r, err)
	}
	if err := invoke.ExecPluginWithoutResult(t.Context(), filepath.Join(f.bin, "main"), conf, f.args("DEL"), nil); err == nil {
		t.Fatal("DEL that exits after IPAM succeeded")
	}

	f.behave(t, "main", Behavior{Commands: map[string]Action{"ADD": {DelegateIPAM: true, Do: Exit}}})
	if _, err := f.add(t.Context(), conf); err == nil {
		t.Fatal("ADD that exits after IPAM succeeded")
	}
	var cmds []string
	for _, r := range MustReadRecords(t, ipamRecord) {
		cmds = append(cmds, r.Command)
		if !slices.Contains(r.Env, "CNITEST_DELEGATED=1") {
			t.Errorf("IPAM record without the delegation mark: %v", r.Env)
		}
	}
	if !slices.Equal(cmds, []string{"ADD", "DEL", "ADD"}) {
		t.Fatalf("IPAM calls = %v, want ADD DEL ADD", cmds)
	}
}

// TestIPAMDelegate checks the slow IPAM of the benchmark: the plugin, as the IPAM plugin
// itself (ipam.type names it), sleeps and then hands ADD and DEL on to the IPAM plugin
// ipamDelegate names, whose addresses it returns.
func TestIPAMDelegate(t *testing.T) {
	f := newFixture(t)
	ipamRecord := filepath.Join(t.TempDir(), "ipam.jsonl")
	MustWriteBehavior(t, SidecarPath(filepath.Join(f.bin, "fakeipam")), Behavior{Record: ipamRecord,
		Commands: map[string]Action{"ADD": {IPs: []IP{{Address: "10.99.0.8/24"}}}}})
	conf := netconf("1.0.0", map[string]any{"ipam": map[string]any{"type": "main"}})
	f.behave(t, "main", Behavior{Commands: map[string]Action{
		"ADD": {SleepMS: 50, DelegateIPAM: true, IPAMDelegate: "fakeipam"},
		"DEL": {DelegateIPAM: true, IPAMDelegate: "fakeipam"},
	}})
	start := time.Now()
	r, err := f.add(t.Context(), conf)
	if err != nil || len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.99.0.8/24" {
		t.Fatalf("ADD through the delegate = %+v, %v", r, err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("ADD returned before its sleep")
	}
	if err := invoke.ExecPluginWithoutResult(t.Context(), filepath.Join(f.bin, "main"), conf, f.args("DEL"), nil); err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, r := range MustReadRecords(t, ipamRecord) {
		cmds = append(cmds, r.Command)
	}
	if !slices.Equal(cmds, []string{"ADD", "DEL"}) {
		t.Fatalf("delegate calls = %v, want ADD DEL", cmds)
	}
}

func TestInstallAsRefusesPaths(t *testing.T) {
	if _, err := InstallAs(t.TempDir(), "a/b"); err == nil {
		t.Fatal("InstallAs accepted a path")
	}
}
