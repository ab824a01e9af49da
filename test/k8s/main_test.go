//go:build linux && (k8s_e2e || k8s_bench)

// Package k8s is the Kubernetes suite: a cluster of network-namespace nodes whose every node
// runs containerd v2.4.2 with cnishim inside (the go-cni drop-in, gocni/), a kubelet and
// kube-proxy v1.37.2 under a real control plane (framework.Cluster), judged by the upstream
// e2e suite's [sig-network] specs, and side by side the same cluster on containerd as
// released. make deps-k8s builds what it runs; make e2e-k8s runs it (docs/kubernetes.md).
package k8s

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

var env *framework.Env

// host is what the suite must leave on the host as it found it: what containerd and a kubelet
// would change, and the paths kubectl and the control plane write to by default, the sysctls
// kube-proxy sets and the iptables chains it makes (in each node's namespace, never the host's).
var host = framework.HostGuard{
	Suite:   "test/k8s",
	Kubelet: true,
	Paths: []string{
		"/var/run/kubernetes", "/var/lib/etcd",
		// kubectl's cache, unless told otherwise (framework.Cluster.KubectlEnv).
		filepath.Join(os.Getenv("HOME"), ".kube"),
	},
	Sysctls: []string{"net/netfilter/nf_conntrack_max", "net/ipv4/conf/all/route_localnet"},
	Chains:  []string{"KUBE-SERVICES", "KUBE-PROXY-CANARY", "KUBE-FORWARD"},
}

func TestMain(m *testing.M) {
	framework.Main(m, "test/k8s", framework.Needs{
		Plugins:    []string{"ptp", "host-local", "portmap", "loopback"},
		Tools:      []string{"iptables-save", "unshare", "nsenter", "mount", "ip", "curl", "sysctl"},
		Crictl:     true,
		Containerd: true,
		Kubelet:    true,
		Kubernetes: true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			return nil, host.Before()
		},
		AfterPass: host.After,
	})
}
