// Command cnitest is a small CNI plugin for tests, told what to do by a JSON behavior file
// (see package internal/testing/plugintest/behavior for the file's format and how the plugin finds
// it). It can answer VERSION with a chosen list of versions; record every invocation (command,
// stdin, CNI environment) as a JSON line; and, per command, succeed with a result (given, built
// from IPs and interfaces, from the IPAM plugin's result, or passed through from prevResult),
// hang, sleep, exit non-zero without output, print garbage or a truncated result, or return a
// CNI error, on every call or only on the Nth. It can delegate to its IPAM plugin before
// misbehaving, to leave an address allocated, or, as an IPAM plugin itself, sleep and then
// delegate to a real IPAM (a slow IPAM handing out real addresses).
//
// Tests build it once with internal/testing/plugintest and install it under the plugin names they
// need.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/cnishim/cnishim/internal/testing/plugintest/behavior"
)

const about = "cnitest: a configurable CNI plugin for tests"

func main() {
	if os.Getenv("CNI_COMMAND") == "VERSION" {
		// skel answers VERSION itself; the plugin must be able to misbehave on it too.
		stdin, _ := readAll(os.Stdin)
		if err := run("VERSION", stdin, nil); err != nil {
			printError(err)
			os.Exit(1)
		}
		return
	}
	b, _, err := loadBehavior(nil)
	if err != nil {
		printError(err)
		os.Exit(1)
	}
	cmd := func(name string) func(*skel.CmdArgs) error {
		return func(args *skel.CmdArgs) error { return run(name, args.StdinData, args) }
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmd("ADD"),
		Del:    cmd("DEL"),
		Check:  cmd("CHECK"),
		GC:     cmd("GC"),
		Status: cmd("STATUS"),
	}, supported(b), about)
}

func supported(b behavior.File) version.PluginInfo {
	if len(b.Versions) == 0 {
		return version.All
	}
	return version.PluginSupports(b.Versions...)
}

// run does what the behavior file says for one command. args is nil for VERSION.
func run(cmd string, stdin []byte, args *skel.CmdArgs) error {
	b, _, err := loadBehavior(stdin)
	if err != nil {
		return err
	}
	act := b.Commands[cmd]
	call := 0
	if p := counterPath(b, cmd); p != "" {
		if call, err = bump(p); err != nil {
			return types.NewError(types.ErrIOFailure, "cnitest: call counter", err.Error())
		}
	}
	if b.Record != "" {
		if err := record(b.Record, cmd, stdin, call); err != nil {
			return types.NewError(types.ErrIOFailure, "cnitest: record", err.Error())
		}
	}
	if act.SleepMS > 0 {
		time.Sleep(time.Duration(act.SleepMS) * time.Millisecond)
	}
	var ipamResult types.Result
	if act.DelegateIPAM && (cmd == "ADD" || cmd == "DEL") {
		if ipamResult, err = delegateIPAM(cmd, stdin, act.IPAMDelegate); err != nil {
			return err
		}
	}
	do := act.Do
	if act.OnCall > 0 {
		if call == 0 {
			return types.NewError(types.ErrInvalidNetworkConfig, "cnitest: onCall needs a record file or a counters directory", "")
		}
		if call != act.OnCall {
			do = behavior.Succeed
		}
	}

	switch do {
	case "", behavior.Succeed:
		out, err := output(cmd, stdin, args, act, b, ipamResult)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(out)
		return err
	case behavior.Hang:
		for {
			time.Sleep(time.Hour)
		}
	case behavior.Exit:
		code := act.ExitCode
		if code == 0 {
			code = 1
		}
		os.Exit(code)
	case behavior.Garbage:
		fmt.Print("cnitest garbage: this is not JSON {")
		os.Exit(0)
	case behavior.Truncated:
		out, err := output(cmd, stdin, args, act, b, ipamResult)
		if err != nil {
			return err
		}
		if len(out) == 0 {
			out = []byte(`{"cniVersion":"1.0.0","interfaces":[]}`)
		}
		_, _ = os.Stdout.Write(out[:len(out)/2])
		os.Exit(0)
	case behavior.Error:
		code := act.Code
		if code == 0 {
			code = 999
		}
		return types.NewError(code, act.Msg, act.Details)
	}
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("cnitest: unknown action %q for %s", do, cmd), "")
}

// output is what a successful command prints: VERSION's supported versions, ADD's result,
// nothing for the others.
func output(cmd string, stdin []byte, args *skel.CmdArgs, act behavior.Action, b behavior.File, ipamResult types.Result) ([]byte, error) {
	switch cmd {
	case "VERSION":
		var buf bytes.Buffer
		if err := supported(b).Encode(&buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case "ADD":
		if act.Result != nil {
			return append([]byte(nil), act.Result...), nil
		}
		res, confVersion, err := addResult(stdin, args, act, ipamResult)
		if err != nil {
			return nil, err
		}
		r, err := res.GetAsVersion(confVersion)
		if err != nil {
			return nil, types.NewError(types.ErrIncompatibleCNIVersion, "cnitest: convert result", err.Error())
		}
		return json.Marshal(r)
	}
	return nil, nil
}

// addResult builds the ADD result and returns it with the config's cniVersion.
func addResult(stdin []byte, args *skel.CmdArgs, act behavior.Action, ipamResult types.Result) (*current.Result, string, error) {
	conf := &types.PluginConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, "", types.NewError(types.ErrDecodingFailure, "cnitest: parse config", err.Error())
	}
	if err := version.ParsePrevResult(conf); err != nil {
		return nil, "", types.NewError(types.ErrDecodingFailure, "cnitest: parse prevResult", err.Error())
	}
	var res *current.Result
	var err error
	switch {
	case ipamResult != nil:
		res, err = current.NewResultFromResult(ipamResult)
	case len(act.IPs) == 0 && len(act.Interfaces) == 0 && conf.PrevResult != nil:
		res, err = current.NewResultFromResult(conf.PrevResult)
	default:
		res = &current.Result{CNIVersion: current.ImplementedSpecVersion}
		if len(act.IPs) == 0 && len(act.Interfaces) == 0 {
			res.Interfaces = []*current.Interface{{Name: args.IfName, Sandbox: args.Netns}}
		}
	}
	if err != nil {
		return nil, "", types.NewError(types.ErrDecodingFailure, "cnitest: convert result", err.Error())
	}
	for _, i := range act.Interfaces {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: i.Name, Mac: i.Mac, Sandbox: i.Sandbox})
	}
	for _, ip := range act.IPs {
		addr, err := types.ParseCIDR(ip.Address)
		if err != nil {
			return nil, "", types.NewError(types.ErrInvalidNetworkConfig, "cnitest: ips", err.Error())
		}
		c := &current.IPConfig{Address: *addr, Interface: ip.Interface}
		if ip.Gateway != "" {
			c.Gateway = net.ParseIP(ip.Gateway)
		}
		res.IPs = append(res.IPs, c)
	}
	return res, conf.CNIVersion, nil
}

// delegateIPAM runs the IPAM plugin for ADD or DEL: plugin if set, else the config's
// ipam.type.
func delegateIPAM(cmd string, stdin []byte, plugin string) (types.Result, error) {
	var conf struct {
		IPAM struct {
			Type string `json:"type"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cnitest: parse config", err.Error())
	}
	if plugin == "" {
		plugin = conf.IPAM.Type
	}
	if plugin == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "cnitest: delegateIPAM needs ipam.type in the config or ipamDelegate", "")
	}
	// The IPAM plugin may be cnitest too: tell it it was delegated to, so that it takes its
	// behavior from the ipam section or its own binary, not from the config's top level.
	if err := os.Setenv(behavior.EnvDelegated, "1"); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if cmd == "DEL" {
		return nil, invoke.DelegateDel(ctx, plugin, stdin, nil)
	}
	return invoke.DelegateAdd(ctx, plugin, stdin, nil)
}

// loadBehavior finds and reads the behavior file: the config's "behavior" key, else the
// environment, else the file beside the binary; when delegated to as IPAM, the ipam section's
// "behavior" key, else the file beside the binary. No file at all means the zero File.
func loadBehavior(stdin []byte) (behavior.File, string, error) {
	var b behavior.File
	var conf struct {
		Behavior string `json:"behavior"`
		IPAM     struct {
			Behavior string `json:"behavior"`
		} `json:"ipam"`
	}
	if len(stdin) > 0 {
		_ = json.Unmarshal(stdin, &conf)
	}
	path := conf.Behavior
	if os.Getenv(behavior.EnvDelegated) == "1" {
		path = conf.IPAM.Behavior
	} else if path == "" {
		path = os.Getenv(behavior.EnvFile)
	}
	if path == "" {
		side := os.Args[0] + behavior.SidecarSuffix
		if _, err := os.Stat(side); err != nil {
			return b, "", nil
		}
		path = side
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return b, path, types.NewError(types.ErrInvalidNetworkConfig, "cnitest: behavior file", err.Error())
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, path, types.NewError(types.ErrInvalidNetworkConfig, "cnitest: behavior file "+path, err.Error())
	}
	return b, path, nil
}

func counterPath(b behavior.File, cmd string) string {
	switch {
	case b.Counters != "":
		return filepath.Join(b.Counters, cmd+".count")
	case b.Record != "":
		return b.Record + "." + cmd + ".count"
	}
	return ""
}

// bump increments the counter in file p under an exclusive lock and returns the new value.
func bump(p string) (int, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, err
	}
	data, err := readAll(f)
	if err != nil {
		return 0, err
	}
	n := 0
	if s := strings.TrimSpace(string(data)); s != "" {
		if n, err = strconv.Atoi(s); err != nil {
			return 0, fmt.Errorf("counter %s: %w", p, err)
		}
	}
	n++
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(n)), 0); err != nil {
		return 0, err
	}
	return n, nil
}

// record appends one invocation to the record file as a single write.
func record(p, cmd string, stdin []byte, call int) error {
	r := behavior.Record{Command: cmd, Binary: os.Args[0], Stdin: string(stdin), PID: os.Getpid(), Call: call}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CNI_") || strings.HasPrefix(kv, "CNITEST_") {
			r.Env = append(r.Env, kv)
		}
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readAll(f *os.File) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}

// printError prints err as a CNI error on stdout, the way skel does.
func printError(err error) {
	var e *types.Error
	if !errors.As(err, &e) {
		e = types.NewError(types.ErrInternal, err.Error(), "")
	}
	_ = e.Print()
}
