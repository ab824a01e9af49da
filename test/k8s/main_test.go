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

// host is what the suite must leave on the host as it found it: the paths containerd, a
// kubelet, kubectl or the control plane write to by default, the sysctls the kubelet and kube-proxy
// set, and the iptables chains kube-proxy and a kubelet make (in each node's namespace, never
// the host's).
var host = framework.HostGuard{
	Suite: "test/k8s",
	Paths: []string{
		"/run/containerd", "/var/run/nri", "/etc/containerd", "/var/lib/containerd",
		"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/usr/libexec/kubernetes",
		"/var/run/kubernetes", "/var/lib/etcd", "/sys/fs/cgroup/memory/k8s.io", "/sys/fs/cgroup/memory/kubepods",
		// kubectl's cache, unless told otherwise (framework.Cluster.KubectlEnv).
		filepath.Join(os.Getenv("HOME"), ".kube"),
	},
	Sysctls: []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/netfilter/nf_conntrack_max",
		"net/ipv4/conf/all/route_localnet"},
	Chains: []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY", "KUBE-SERVICES", "KUBE-PROXY-CANARY", "KUBE-FORWARD"},
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
