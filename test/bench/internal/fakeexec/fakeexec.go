// Package fakeexec is a libcni invoke.Exec that runs no process: ADD returns a result with
// one interface and a unique IPv4 address (a chained plugin passes its prevResult through),
// every other command succeeds with no output. The benchmarks use it where the figure is the
// shim's own cost (status look-ups, memory per sandbox), not the plugins'.
package fakeexec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// Exec is the fake; the zero value is ready. It is safe for concurrent use.
type Exec struct {
	adds atomic.Uint64
	// Calls counts every plugin invocation, by any command.
	Calls atomic.Uint64
}

var _ invoke.Exec = (*Exec)(nil)

// ExecPlugin answers the command in environ's CNI_COMMAND.
func (e *Exec) ExecPlugin(_ context.Context, _ string, stdin []byte, environ []string) ([]byte, error) {
	e.Calls.Add(1)
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	var conf struct {
		CNIVersion string          `json:"cniVersion"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, fmt.Errorf("fake plugin: stdin: %w", err)
	}
	switch env["CNI_COMMAND"] {
	case "ADD":
		if len(conf.PrevResult) > 0 {
			return conf.PrevResult, nil
		}
		n := e.adds.Add(1)
		return fmt.Appendf(nil, `{"cniVersion":%q,"interfaces":[{"name":%q,"sandbox":%q}],"ips":[{"address":"10.199.%d.%d/16","gateway":"10.199.0.1","interface":0}]}`,
			conf.CNIVersion, env["CNI_IFNAME"], env["CNI_NETNS"], (n/250)%256, n%250+2), nil
	case "VERSION":
		return []byte(`{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}`), nil
	}
	return nil, nil
}

// InstallStubs writes an executable stub for each plugin name into dir, so that a config
// loader that checks plugin binaries exist accepts the networks; the stubs never run.
func InstallStubs(dir string, plugins ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range plugins {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/false\n"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// FindInPath pretends every plugin exists in the first directory.
func (e *Exec) FindInPath(plugin string, paths []string) (string, error) {
	dir := "/fake"
	if len(paths) > 0 {
		dir = paths[0]
	}
	return filepath.Join(dir, plugin), nil
}

// Decode decodes a VERSION answer.
func (e *Exec) Decode(b []byte) (version.PluginInfo, error) {
	var d version.PluginDecoder
	return d.Decode(b)
}
