//go:build linux

// Package containerd is the end-to-end suite of containerd with cnishim inside: containerd
// v2.4.2 built with the go-cni drop-in (gocni/) and, side by side, containerd as released,
// running real busybox containers under runc through their CRI plugin, driven by crictl. Every
// check runs on both builds and reports each; hack/install-containerd.sh builds them.
package containerd

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/cnishim/cnishim/internal/testing/plugintest"
	"github.com/cnishim/cnishim/test/framework"
)

var env *framework.Env

// hostPaths are the host's paths a containerd writes to by default, and the cgroup it puts
// pods without a parent in (critest's); the suite's containerds must never leave them behind.
var hostPaths = []string{"/run/containerd", "/var/run/nri", "/etc/containerd", "/var/lib/containerd", "/sys/fs/cgroup/memory/k8s.io"}

func TestMain(m *testing.M) {
	var absent []string
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			absent = append(absent, p)
		}
	}
	framework.Main(m, "test/containerd", framework.Needs{
		Plugins:    []string{"bridge", "host-local", "portmap", "loopback"},
		Tools:      []string{"iptables-save", "unshare", "nsenter", "mount"},
		Crictl:     true,
		Containerd: true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			// The STATUS check's plugin.
			if _, err := plugintest.Build(); err != nil {
				return nil, err
			}
			return plugintest.Cleanup, nil
		},
		AfterPass: func() error {
			for _, p := range absent {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s did not exist before the suite and does now: a containerd wrote outside its own dirs", p)
				}
			}
			return nil
		},
	})
}
