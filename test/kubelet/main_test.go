//go:build linux && (kubelet_e2e || kubelet_bench)

// Package kubelet is the end-to-end suite of the kubelet on containerd with cnishim inside: a
// real kubelet v1.37.2, standalone (static pods, no API server), on containerd v2.4.2 built
// with the go-cni drop-in (gocni/) and, side by side, on containerd as released. Every check
// runs on both builds and reports each; hack/install-containerd.sh and hack/install-kubernetes.sh
// build them.
package kubelet

import (
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

var env *framework.Env

// host is what the suite must leave on the host as it found it: what containerd and a kubelet
// would change.
var host = framework.HostGuard{Suite: "test/kubelet", Kubelet: true}

func TestMain(m *testing.M) {
	framework.Main(m, "test/kubelet", framework.Needs{
		Plugins:    []string{"bridge", "host-local", "portmap", "loopback", "bandwidth"},
		Tools:      []string{"iptables-save", "unshare", "nsenter", "mount", "tc"},
		Crictl:     true,
		Containerd: true,
		Kubelet:    true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			return nil, host.Before()
		},
		AfterPass: host.After,
	})
}
