//go:build linux

package impls_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/test/bench/internal/benchtest"
	"github.com/cnishim/cnishim/test/bench/internal/host"
	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// call is one recorded plugin invocation, reduced to what must be the same whichever
// implementation drives the plugins.
type call struct {
	Plugin, Command, IfName, NetNS, ContainerID string
	Args                                        []string // CNI_ARGS, sorted
	Stdin                                       string   // canonical JSON, prevResult removed
}

func (c call) String() string {
	return fmt.Sprintf("%s %s if=%s args=%v stdin=%s", c.Plugin, c.Command, c.IfName, c.Args, c.Stdin)
}

// recordingBinDir installs, for each real plugin, a wrapper that records its environment
// and stdin in rec and then runs the real plugin.
func recordingBinDir(t *testing.T, real, rec string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		script := fmt.Sprintf(`#!/bin/sh
f=%s/$(date +%%s%%N)-$$__%s
env | grep '^CNI_' > "$f.env"
cat > "$f.stdin"
exec %s < "$f.stdin"
`, rec, p, filepath.Join(real, p))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readCalls(t *testing.T, rec string) []call {
	t.Helper()
	envs, err := filepath.Glob(filepath.Join(rec, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(envs)
	var calls []call
	for _, f := range envs {
		base := strings.TrimSuffix(f, ".env")
		env, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		stdin, err := os.ReadFile(base + ".stdin")
		if err != nil {
			t.Fatal(err)
		}
		c := call{Plugin: base[strings.LastIndex(base, "__")+2:]}
		for _, line := range strings.Split(string(env), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "CNI_COMMAND":
				c.Command = v
			case "CNI_IFNAME":
				c.IfName = v
			case "CNI_NETNS":
				c.NetNS = v
			case "CNI_CONTAINERID":
				c.ContainerID = v
			case "CNI_ARGS":
				c.Args = strings.Split(v, ";")
				sort.Strings(c.Args)
			}
		}
		var m map[string]any
		if err := json.Unmarshal(stdin, &m); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		delete(m, "prevResult")
		// go-cni's PortMapping has no JSON tags, so its keys are capitalised; the plugins
		// decode keys case-insensitively, so the comparison does too.
		b, _ := json.Marshal(lowerKeys(m)) // map keys are sorted
		c.Stdin = string(b)
		calls = append(calls, c)
	}
	return calls
}

// TestSamePluginInput sets one pod up and tears it down with each implementation and checks
// that the bridge, host-local and portmap plugins received the same commands, CNI_ARGS,
// configuration and capability arguments from all three: the benchmark compares the shims,
// not different work. Only go-cni runs the loopback plugin (cnishim brings lo up itself,
// the floor not at all).
func TestSamePluginInput(t *testing.T) {
	benchtest.RequireRoot(t)
	realBin := benchtest.CNIBinDir(t)
	for _, hostPort := range []int32{0, 30999} {
		t.Run(fmt.Sprintf("hostPort=%d", hostPort), func(t *testing.T) {
			got := map[string][]call{}
			loopbacks := map[string]int{}
			for _, name := range []string{impls.Cnishim, impls.GoCNI, impls.Floor} {
				rec := t.TempDir()
				env, err := host.NewEnv(recordingBinDir(t, realBin, rec), "1.0.0", host.Names{Network: "cnibtest-fair", Bridge: "cnibtfair0", Subnet: "10.197.0.0/16"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = env.Close() })
				pods := []impls.PodSpec{{
					ID: strings.Repeat("ab", 32), Name: "fair", Namespace: "cnibench", UID: "0123-4567",
				}}
				if hostPort != 0 {
					pods[0].HostPort, pods[0].HostIP = hostPort, host.HostIP
				}
				if err := env.CreateNetNS(pods); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = env.Sweep(t.Context(), pods)
					_ = env.RemoveNetNS(pods)
				})
				impl, err := impls.New(t.Context(), name, env.Impl(nil))
				if err != nil {
					t.Fatal(err)
				}
				if err := impl.SetUp(t.Context(), &pods[0]); err != nil {
					t.Fatal(err)
				}
				if err := impl.TearDown(t.Context(), &pods[0]); err != nil {
					t.Fatal(err)
				}
				_ = impl.Close()
				leaks, err := env.CheckLeaks(pods)
				if err != nil || !leaks.Clean() {
					t.Fatalf("%s left: %v %v", name, leaks, err)
				}
				for _, c := range readCalls(t, rec) {
					if c.Command == "VERSION" {
						continue // plugin validation when the config is loaded, not per pod
					}
					if c.Plugin == "loopback" {
						loopbacks[name]++
						continue
					}
					c.NetNS = strings.ReplaceAll(c.NetNS, env.NetNSDir, "NETNS")
					c.Stdin = strings.ReplaceAll(c.Stdin, env.IPAMDir, "IPAM")
					got[name] = append(got[name], c)
				}
			}
			want := got[impls.Floor]
			if len(want) == 0 {
				t.Fatal("floor: no plugin calls recorded")
			}
			for _, name := range []string{impls.Cnishim, impls.GoCNI} {
				if !slices.EqualFunc(got[name], want, func(a, b call) bool { return a.String() == b.String() }) {
					t.Errorf("%s gave the plugins different input than raw libcni:\n%s\nfloor:\n%s", name, dump(got[name]), dump(want))
				}
			}
			if wantLo := map[string]int{impls.GoCNI: 2}; !maps.Equal(loopbacks, wantLo) {
				t.Errorf("loopback plugin runs = %v, want %v", loopbacks, wantLo)
			}
		})
	}
}

func lowerKeys(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[strings.ToLower(k)] = lowerKeys(x)
		}
		return m
	case []any:
		for i := range v {
			v[i] = lowerKeys(v[i])
		}
	}
	return v
}

func dump(cs []call) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	return b.String()
}
