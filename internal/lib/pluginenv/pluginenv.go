// Package pluginenv trims the environment a CNI plugin runs with to what a plugin needs, so
// that the runtime's own environment (credentials, proxies, tokens) never reaches a plugin.
// Both the configuration watcher (VERSION probes) and the network plugin (every other
// command) run plugins through it.
package pluginenv

import (
	"context"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
)

// Filter returns the entries of environ a plugin needs: the CNI_* variables and PATH (plugins
// such as portmap run iptables). libcni builds environ from the runtime's whole environment
// plus the CNI variables; nil means the whole environment. The result is sorted and never nil,
// so it never means "inherit everything".
func Filter(environ []string) []string {
	if environ == nil {
		environ = os.Environ()
	}
	out := make([]string, 0, 8)
	for _, kv := range environ {
		if strings.HasPrefix(kv, "CNI_") || strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	slices.Sort(out)
	return out
}

// Exec is an invoke.Exec that runs plugins through the embedded one with the environment
// Filter leaves.
type Exec struct{ invoke.Exec }

// ExecPlugin implements invoke.Exec.
func (e Exec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	return e.Exec.ExecPlugin(ctx, pluginPath, stdin, Filter(environ))
}
