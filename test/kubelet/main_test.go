//go:build linux && (kubelet_e2e || kubelet_bench)

// Package kubelet is the end-to-end suite of the kubelet on containerd with cnishim inside: a
// real kubelet v1.37.2, standalone (static pods, no API server), on containerd v2.4.2 built
// with the go-cni drop-in (gocni/) and, side by side, on containerd as released. Every check
// runs on both builds and reports each; hack/install-containerd.sh and hack/install-kubelet.sh
// build them.
package kubelet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

var env *framework.Env

// hostPaths are the host's paths a containerd or a kubelet writes to by default; the suite's
// must never leave them behind.
var hostPaths = []string{
	"/run/containerd", "/var/run/nri", "/etc/containerd", "/var/lib/containerd",
	"/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/usr/libexec/kubernetes",
	"/sys/fs/cgroup/memory/k8s.io", "/sys/fs/cgroup/memory/kubepods",
}

// hostSysctls are the host sysctls the kubelet sets unless it finds its values.
var hostSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// kubeletChains are the iptables chains a kubelet makes with makeIPTablesUtilChains.
var kubeletChains = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

func TestMain(m *testing.M) {
	var absent []string
	var sysctls map[string]string
	var rules string
	framework.Main(m, "test/kubelet", framework.Needs{
		Plugins:    []string{"bridge", "host-local", "portmap", "loopback", "bandwidth"},
		Tools:      []string{"iptables-save", "unshare", "nsenter", "mount", "tc"},
		Crictl:     true,
		Containerd: true,
		Kubelet:    true,
		Before: func() (func(), error) {
			env = framework.MainEnv()
			// What the host has before the suite, for AfterPass. Paths that exist already
			// cannot tell; they are named.
			for _, p := range hostPaths {
				if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
					absent = append(absent, p)
				} else {
					fmt.Fprintf(os.Stderr, "test/kubelet: %s exists before the suite; whether the suite writes it is not checked\n", p)
				}
			}
			var err error
			if sysctls, err = readSysctls(); err != nil {
				return nil, err
			}
			if rules, err = iptablesSave(); err != nil {
				return nil, err
			}
			return nil, nil
		},
		AfterPass: func() error {
			var errs []error
			for _, p := range absent {
				if _, err := os.Lstat(p); err == nil {
					errs = append(errs, fmt.Errorf("%s did not exist before the suite and does now: a containerd or kubelet wrote outside its own dirs", p))
				}
			}
			now, err := readSysctls()
			if err != nil {
				return err
			}
			for name, v := range now {
				if v != sysctls[name] {
					errs = append(errs, fmt.Errorf("host sysctl %s was %q before the suite and is %q now", name, sysctls[name], v))
				}
			}
			after, err := iptablesSave()
			if err != nil {
				return err
			}
			for _, c := range kubeletChains {
				if !strings.Contains(rules, c) && strings.Contains(after, c) {
					errs = append(errs, fmt.Errorf("the host has the kubelet's iptables chain %s, which it did not have before the suite", c))
				}
			}
			return errors.Join(errs...)
		},
	})
}

func readSysctls() (map[string]string, error) {
	out := map[string]string{}
	for _, s := range hostSysctls {
		b, err := os.ReadFile("/proc/sys/" + s)
		if err != nil {
			return nil, err
		}
		out[s] = strings.TrimSpace(string(b))
	}
	return out, nil
}

func iptablesSave() (string, error) {
	b, err := exec.Command("iptables-save").Output()
	if err != nil {
		return "", fmt.Errorf("iptables-save: %w", err)
	}
	return string(b), nil
}
