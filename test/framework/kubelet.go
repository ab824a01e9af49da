//go:build linux

package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubeletSysctls are the host sysctls the kubelet's container manager sets when it finds
// another value (setupKernelTunables), with the values it wants. Inside the node's mount
// namespace each file is a read-only bind mount of a file holding that value, so the kubelet
// finds nothing to change and the host's values stay as they are.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// Kubelet is a kubelet on a Containerd: standalone (no API server: the pods are static pods,
// read from ManifestDir), or, with KubeletOptions.Kubeconfig, a node of a Cluster, whose ports
// and pods differ as KubeletOptions says. It runs in the containerd's mount namespace (and
// network namespace), where /var/lib is the containerd's own dir (so the kubelet's root dir,
// /var/lib/kubelet, and its cert dir, /var/lib/kubelet/pki, are the test's), /var/log is a dir
// of the test's (pod logs and the /var/log/containers links) and the sysctls it would write
// show the values it wants. Its pods' cgroups go under the containerd's CgroupParent, its
// servers listen on loopback ports of its own, and it makes no iptables chains
// (makeIPTablesUtilChains false): it leaves nothing on the host. Pods reads the kubelet's own view of its pods from its read-only port.
type Kubelet struct {
	T *testing.T
	// C is the containerd the kubelet runs on, and in whose mount namespace.
	C    *Containerd
	Node string // the node name (--hostname-override)
	// Dir is the kubelet's own dir, under C.Dir: its manifests, config, log, /var/log.
	Dir string
	// ManifestDir is the static pod dir (staticPodPath).
	ManifestDir string
	// Config is the KubeletConfiguration file (--config).
	Config string
	Log    string // the kubelet's log (appended across restarts)
	// ReadOnlyPort serves /pods on 127.0.0.1 (a standalone kubelet's).
	ReadOnlyPort int

	opts KubeletOptions
	daemon
	// mountedIn is the holder pid whose namespace has the kubelet's mounts.
	mountedIn int
}

// KubeletOptions make a kubelet a node of a cluster; the zero value is a standalone kubelet.
type KubeletOptions struct {
	// Kubeconfig names the API server the kubelet registers its node with and takes its pods
	// from, as well as from ManifestDir. Its servers then listen on the node's addresses at
	// the default ports (10250, read-only 10255, healthz 127.0.0.1:10248), which only the
	// node's network namespace reaches (the containerd's Netns): Pods does not work.
	Kubeconfig string
	// NodeIP is the node's address (--node-ip); ClusterDNS and ClusterDomain what pods with
	// the ClusterFirst DNS policy resolve with.
	NodeIP        string
	ClusterDNS    string
	ClusterDomain string
}

// StartKubelet starts a kubelet on c, with node as its node name: standalone, or a node of the
// cluster opts names.
func StartKubelet(t *testing.T, c *Containerd, node string, opts KubeletOptions) *Kubelet {
	t.Helper()
	if c.Env.Kubelet == "" {
		t.Fatal("framework: Needs.Kubelet not set")
	}
	k := &Kubelet{
		T: t, C: c, Node: node, opts: opts,
		Dir:         filepath.Join(c.Dir, "kubelet"),
		ManifestDir: filepath.Join(c.Dir, "kubelet", "manifests"),
		Config:      filepath.Join(c.Dir, "kubelet", "config.json"),
		Log:         filepath.Join(c.Dir, "kubelet", "kubelet.log"),
	}
	for _, d := range []string{k.ManifestDir, filepath.Join(k.Dir, "varlog"), filepath.Join(k.Dir, "sysctl"), filepath.Join(k.Dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ports := FreePorts(t, 3)
	k.ReadOnlyPort = ports[1]
	cfg := map[string]any{
		"kind":                          "KubeletConfiguration",
		"apiVersion":                    "kubelet.config.k8s.io/v1beta1",
		"address":                       "127.0.0.1",
		"port":                          ports[0],
		"readOnlyPort":                  ports[1],
		"healthzBindAddress":            "127.0.0.1",
		"healthzPort":                   ports[2],
		"authentication":                map[string]any{"anonymous": map[string]any{"enabled": true}, "webhook": map[string]any{"enabled": false}},
		"authorization":                 map[string]any{"mode": "AlwaysAllow"},
		"containerRuntimeEndpoint":      "unix://" + c.Sock,
		"cgroupDriver":                  "cgroupfs",
		"cgroupRoot":                    c.CgroupParent,
		"failCgroupV1":                  false,
		"failSwapOn":                    false,
		"staticPodPath":                 k.ManifestDir,
		"makeIPTablesUtilChains":        false,
		"volumePluginDir":               filepath.Join(k.Dir, "volume-plugins"),
		"imageGCHighThresholdPercent":   100,
		"imageGCLowThresholdPercent":    99,
		"serializeImagePulls":           false,
		"localStorageCapacityIsolation": false,
	}
	if opts.Kubeconfig != "" {
		// Pods with the Default DNS policy get the node's resolver: the node's own address,
		// where nothing answers (nothing leaves the cluster).
		resolv := filepath.Join(k.Dir, "resolv.conf")
		if err := os.WriteFile(resolv, []byte("nameserver "+opts.NodeIP+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		maps.Copy(cfg, map[string]any{
			"address": "0.0.0.0", "port": 10250, "readOnlyPort": 10255, "healthzPort": 10248,
			"clusterDNS": []string{opts.ClusterDNS}, "clusterDomain": opts.ClusterDomain, "resolvConf": resolv,
		})
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(k.Config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered after the containerd's cleanup, so it runs before it: the kubelet stops
	// before that cleanup removes its pods, which it would otherwise start again.
	t.Cleanup(k.cleanup)
	k.Start()
	return k
}

// mountNamespace gives the containerd's mount namespace what the kubelet needs there, once per
// holder: /var/log of the test's, and the sysctl files showing the values the kubelet wants.
func (k *Kubelet) mountNamespace() error {
	holder := k.C.holder.Process.Pid
	if k.mountedIn == holder {
		return nil
	}
	var script strings.Builder
	fmt.Fprintf(&script, "set -e\nmount --bind %q /var/log\n", filepath.Join(k.Dir, "varlog"))
	for name, v := range kubeletSysctls {
		f := filepath.Join(k.Dir, "sysctl", strings.ReplaceAll(name, "/", "."))
		if err := os.WriteFile(f, []byte(v+"\n"), 0o444); err != nil {
			return err
		}
		fmt.Fprintf(&script, "mount --bind %q /proc/sys/%s\nmount -o remount,bind,ro /proc/sys/%s\n", f, name, name)
	}
	out, err := k.C.enter("sh", "-c", script.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("the kubelet's mounts in the node's mount namespace: %w\n%s", err, out)
	}
	k.mountedIn = holder
	return nil
}

// Start starts the kubelet and waits until its read-only port answers.
func (k *Kubelet) Start() {
	k.T.Helper()
	if err := k.mountNamespace(); err != nil {
		k.T.Fatal(err)
	}
	// The kubelet needs its cgroup root to exist, in every hierarchy (after a reboot too).
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, k.C.CgroupParent), 0o755); err != nil {
			k.T.Fatal(err)
		}
	}
	logf, err := os.OpenFile(k.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		k.T.Fatal(err)
	}
	defer logf.Close()
	argv := []string{k.C.Env.Kubelet, "--config", k.Config, "--hostname-override", k.Node, "--v=3"}
	if k.opts.Kubeconfig != "" {
		argv = append(argv, "--kubeconfig", k.opts.Kubeconfig, "--node-ip", k.opts.NodeIP)
	}
	cmd := k.C.enter(argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		k.T.Fatalf("start kubelet: %v", err)
	}
	if err := awaitServing("kubelet "+k.Node, k.Log, k.started(cmd), 200*time.Millisecond, func() bool {
		if k.opts.Kubeconfig != "" {
			// Its servers are on the node's addresses, not the host's.
			return k.C.enter("curl", "-sf", "--max-time", "2", "-o", "/dev/null", "http://127.0.0.1:10248/healthz").Run() == nil
		}
		_, err := k.Pods()
		return err == nil
	}); err != nil {
		k.T.Fatal(err)
	}
}

// Kill sends sig to the kubelet and waits for it to exit.
func (k *Kubelet) Kill(sig syscall.Signal) {
	k.T.Helper()
	if err := k.kill(sig); err != nil {
		k.T.Errorf("kubelet %s: %v", k.Node, err)
	}
}

// Restart stops the kubelet with SIGTERM and starts it again.
func (k *Kubelet) Restart() {
	k.T.Helper()
	k.Kill(syscall.SIGTERM)
	k.Start()
}

// TailLog returns the last n bytes of the kubelet's log.
func (k *Kubelet) TailLog(n int) string { return TailFile(k.Log, n) }

// KubePod is what the suites read of a pod the kubelet serves on its read-only port (a
// v1.Pod, the fields used).
type KubePod struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Phase      string `json:"phase"`
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			RestartCount int    `json:"restartCount"`
			ContainerID  string `json:"containerID"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// Ready reports the pod's Ready condition.
func (p KubePod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Pods returns the kubelet's pods, by the name the kubelet gives a static pod (the manifest's
// name, "-" and the node name).
func (k *Kubelet) Pods() (map[string]KubePod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(k.ReadOnlyPort)+"/pods", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: %w", k.Node, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("kubelet %s: GET /pods: %w", k.Node, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet %s: GET /pods: %s: %s", k.Node, resp.Status, b)
	}
	var list struct {
		Items []KubePod `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("kubelet %s: GET /pods: %w", k.Node, err)
	}
	out := make(map[string]KubePod, len(list.Items))
	for _, p := range list.Items {
		out[p.Metadata.Name] = p
	}
	return out, nil
}

// PodName is the name the kubelet gives the static pod of manifest name.
func (k *Kubelet) PodName(name string) string { return name + "-" + k.Node }

// WriteManifest writes the static pod manifest name.json (a v1.Pod as JSON), atomically: the
// kubelet skips files whose name starts with a dot, the temp file's.
func (k *Kubelet) WriteManifest(name string, pod any) {
	k.T.Helper()
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		k.T.Fatal(err)
	}
	WriteFileAtomic(k.T, k.ManifestDir, name+".json", string(b))
}

// RemoveManifest removes the static pod manifest name.json.
func (k *Kubelet) RemoveManifest(name string) {
	k.T.Helper()
	if err := os.Remove(filepath.Join(k.ManifestDir, name+".json")); err != nil {
		k.T.Fatal(err)
	}
}

// WaitPods polls the kubelet's pods every 50 ms until cond returns "" for them, for at most d;
// it returns cond's last answer ("" when it got there).
func (k *Kubelet) WaitPods(d time.Duration, cond func(map[string]KubePod) string) string {
	deadline := time.Now().Add(d)
	for {
		pods, err := k.Pods()
		msg := ""
		if err != nil {
			msg = err.Error()
		} else if msg = cond(pods); msg == "" {
			return ""
		}
		if time.Now().After(deadline) {
			return msg
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReady waits until the static pods of the manifests names are Ready with an IP, for at
// most d, and returns them.
func (k *Kubelet) WaitReady(d time.Duration, names ...string) (map[string]KubePod, error) {
	var got map[string]KubePod
	msg := k.WaitPods(d, func(pods map[string]KubePod) string {
		got = pods
		var missing []string
		for _, n := range names {
			p, ok := pods[k.PodName(n)]
			if !ok || !p.Ready() || p.Status.PodIP == "" {
				missing = append(missing, fmt.Sprintf("%s (phase %q, ip %q)", n, p.Status.Phase, p.Status.PodIP))
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("%d of %d pods not Ready with an IP: %s", len(missing), len(names), strings.Join(missing[:min(len(missing), 5)], ", "))
		}
		return ""
	})
	if msg != "" {
		return got, fmt.Errorf("kubelet %s: %s", k.Node, msg)
	}
	return got, nil
}

// RemovePods removes every manifest and waits, up to a minute, until containerd has no ready
// sandbox left: the kubelet drops a pod from its own list as soon as its manifest goes, before
// it has stopped it. A check registers it with t.Cleanup to have its pods gone before
// something it made later (a network) is removed.
func (k *Kubelet) RemovePods() {
	entries, _ := os.ReadDir(k.ManifestDir)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(k.ManifestDir, e.Name()))
	}
	if !WaitUntil(time.Minute, func() bool {
		out, err := k.C.Crictl("pods", "--state", "ready", "-q")
		return err == nil && strings.TrimSpace(out) == ""
	}) {
		k.T.Logf("kubelet %s: ready sandboxes left a minute after every manifest went", k.Node)
	}
}

// cleanup removes every manifest and waits for the kubelet to stop their pods (RemovePods),
// then stops it; the containerd's cleanup removes what is left.
func (k *Kubelet) cleanup() {
	t := k.T
	if t.Failed() {
		t.Logf("kubelet %s log tail:\n%s", k.Node, k.TailLog(12000))
	}
	keepLog(k.Log, filepath.Base(k.C.Dir)+"-kubelet-"+k.C.Build+".log")
	k.forget()
	if k.process() != nil && k.C.process() != nil && k.opts.Kubeconfig == "" {
		k.RemovePods()
	}
	k.Kill(syscall.SIGTERM)
	if k.mountedIn != 0 && k.mountedIn == k.C.holder.Process.Pid {
		// Lazily: a pod's log file may still be open in a container the containerd's
		// cleanup is about to kill.
		_ = k.C.enter("umount", "-l", "/var/log").Run()
	}
}

// ErrNoSandbox is returned by SandboxOf when the pod has no ready sandbox.
var ErrNoSandbox = errors.New("no ready sandbox")

// SandboxOf returns the ID of the ready sandbox of the kubelet's pod podName (PodName).
func (k *Kubelet) SandboxOf(podName string) (string, error) {
	out, err := k.C.Crictl("pods", "--name", "^"+podName+"$", "--state", "ready", "-q")
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("pod %s: %w", podName, ErrNoSandbox)
	case 1:
		return ids[0], nil
	default:
		return "", fmt.Errorf("pod %s has %d ready sandboxes: %v", podName, len(ids), ids)
	}
}

// ContainerOf returns the ID of the running container name of the sandbox.
func (k *Kubelet) ContainerOf(sandbox, name string) (string, error) {
	out, err := k.C.Crictl("ps", "--pod", sandbox, "--name", "^"+name+"$", "--state", "running", "-q")
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		return "", fmt.Errorf("sandbox %s has %d running containers named %s", sandbox[:12], len(ids), name)
	}
	return ids[0], nil
}
