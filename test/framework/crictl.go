//go:build linux

package framework

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// CrictlCtx runs crictl against the server and returns its stdout; an error carries stderr.
func (s *Server) CrictlCtx(ctx context.Context, args ...string) (string, error) {
	timeout := cmp.Or(s.opts.CrictlTimeout, 30*time.Second)
	return RunCrictl(ctx, s.Env.Crictl, s.Sock, timeout, []string{"HOME=" + s.Dir, "CRI_CONFIG_FILE=" + s.Crictlrc}, args...)
}

// RunCrictl runs crictl against the CRI socket sock, each call bounded by timeout (crictl's
// --timeout), with PATH and env as its environment, and returns its stdout; an error names
// the command and carries stderr.
func RunCrictl(ctx context.Context, crictl, sock string, timeout time.Duration, env []string, args ...string) (string, error) {
	full := append([]string{"--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock, "--timeout", timeout.String()}, args...)
	cmd := exec.CommandContext(ctx, crictl, full...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	what := strings.Join(args, " ")
	if len(args) > 4 {
		what = fmt.Sprintf("%s (and %d more)", strings.Join(args[:2], " "), len(args)-2)
	}
	if ctx.Err() != nil {
		return stdout.String(), fmt.Errorf("crictl %s: did not finish: %w (stderr: %s)", what, ctx.Err(), stderr.String())
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Crictl is CrictlCtx bounded by 3 minutes; it works at cleanup too.
func (s *Server) Crictl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.T.Context()), 3*time.Minute)
	defer cancel()
	return s.CrictlCtx(ctx, args...)
}

// MustCrictl is Crictl failing the test on error.
func (s *Server) MustCrictl(args ...string) string {
	s.T.Helper()
	out, err := s.Crictl(args...)
	if err != nil {
		s.T.Fatal(err)
	}
	return out
}

// CrictlEach runs `crictl <verb> <ids...>` over the IDs, in a few crictl processes at once (as
// many kubelet workers would), and returns how many IDs were done and the errors. verb may
// hold flags ("rmp -f").
func (s *Server) CrictlEach(ctx context.Context, verb string, ids []string) (int, error) {
	const procs = 4
	chunk := max(1, (len(ids)+procs-1)/procs)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
		errs []error
	)
	for part := range slices.Chunk(ids, chunk) {
		wg.Go(func() {
			_, err := s.CrictlCtx(ctx, append(strings.Fields(verb), part...)...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			done += len(part)
		})
	}
	wg.Wait()
	return done, errors.Join(errs...)
}

// InstallConf copies the network's conflist into the conf dir with plain cp, as an operator
// would: the file appears empty first and is then written in place.
func (s *Server) InstallConf() {
	s.T.Helper()
	src := filepath.Join(s.Dir, "10-"+s.Net.Name+".conflist")
	if err := os.WriteFile(src, []byte(s.Net.Conflist()), 0o644); err != nil {
		s.T.Fatal(err)
	}
	if out, err := exec.Command("cp", src, s.ConfDir+"/").CombinedOutput(); err != nil {
		s.T.Fatalf("cp %s %s: %v: %s", src, s.ConfDir, err, out)
	}
}

// CRIInfo is the part of `crictl info -o json` the tests read.
type CRIInfo struct {
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  bool   `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
	Config *struct {
		File       string   `json:"file"`
		Name       string   `json:"name"`
		CNIVersion string   `json:"cniVersion"`
		Plugins    []string `json:"plugins"`
	} `json:"config"`
	LastLoadError string `json:"lastLoadError"`
}

// Info runs `crictl info`.
func (s *Server) Info() CRIInfo {
	s.T.Helper()
	var ci CRIInfo
	out := s.MustCrictl("info", "-o", "json")
	if err := json.Unmarshal([]byte(out), &ci); err != nil {
		s.T.Fatalf("crictl info: %v\n%s", err, out)
	}
	return ci
}

// NetworkReady returns the NetworkReady condition of crictl info.
func (s *Server) NetworkReady() (ready bool, reason, message string) {
	s.T.Helper()
	ci := s.Info()
	for _, c := range ci.Status.Conditions {
		if c.Type == "NetworkReady" {
			return c.Status, c.Reason, c.Message
		}
	}
	s.T.Fatal("crictl info has no NetworkReady condition")
	return false, "", ""
}

// WaitNetworkReady polls crictl info until NetworkReady is want, and returns how long it took.
// It fails the test only if that never happens within a generous bound.
func (s *Server) WaitNetworkReady(want bool) time.Duration {
	s.T.Helper()
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		ready, _, msg := s.NetworkReady()
		if ready == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("NetworkReady never became %v (last message: %s)", want, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PodSpec is a crictl pod config, for a Server (Runp) or a Containerd (RunPod).
type PodSpec struct {
	Name      string
	Namespace string // default "e2e"
	Hostname  string // default Name
	// HostPort is mapped to the runtime's web port: ContainerPort on a Server, 80 (the web
	// image's) on a Containerd; 0: no port mapping.
	HostPort    int32
	Labels      map[string]string
	Annotations map[string]string
	DNS         []string // the DNS servers; with them, a search domain and an option
}

// ContainerPort is the container port a PodSpec's HostPort maps to on a Server.
const ContainerPort = 8080

// writeConfig writes p as a crictl pod config file into dir, its host port mapped to
// containerPort, with more fields of the runtime's (nil for none), and returns its path.
func (p PodSpec) writeConfig(dir string, containerPort int32, more map[string]any) (string, error) {
	cfg := map[string]any{
		"metadata":    map[string]any{"name": p.Name, "namespace": cmp.Or(p.Namespace, "e2e"), "uid": "uid-" + p.Name, "attempt": 0},
		"hostname":    cmp.Or(p.Hostname, p.Name),
		"labels":      p.Labels,
		"annotations": p.Annotations,
		"linux":       map[string]any{},
	}
	if p.HostPort != 0 {
		cfg["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": containerPort, "host_port": p.HostPort}}
	}
	if len(p.DNS) > 0 {
		cfg["dns_config"] = map[string]any{"servers": p.DNS, "searches": []string{"e2e.svc.cluster.local"}, "options": []string{"ndots:5"}}
	}
	maps.Copy(cfg, more)
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "pod-"+p.Name+".json")
	return path, os.WriteFile(path, b, 0o600)
}

// Runp writes the pod config and runs `crictl runp`, returning the sandbox ID; the ID and the
// host port are registered as needles.
func (s *Server) Runp(p PodSpec) string {
	s.T.Helper()
	if p.HostPort != 0 {
		s.AddNeedle(fmt.Sprintf("dport %d", p.HostPort))
	}
	path, err := p.writeConfig(s.Dir, ContainerPort, nil)
	if err != nil {
		s.T.Fatal(err)
	}
	id := strings.TrimSpace(s.MustCrictl("runp", path))
	if len(id) != 64 {
		s.T.Fatalf("crictl runp printed %q, want a 64-character sandbox ID", id)
	}
	s.AddNeedle(id)
	return id
}

// PodStatus is the part of `crictl inspectp -o json` the tests read.
type PodStatus struct {
	Status struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Network *struct {
			IP            string `json:"ip"`
			AdditionalIPs []struct {
				IP string `json:"ip"`
			} `json:"additionalIps"`
		} `json:"network"`
		Linux struct {
			Namespaces struct {
				Options struct {
					Network string `json:"network"`
				} `json:"options"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"status"`
	Info struct {
		PID       int    `json:"pid"` // the sandbox's (pause) process
		NetNSPath string `json:"netnsPath"`
		State     string `json:"state"`
		Reason    string `json:"reason"`
	} `json:"info"`
}

// ParsePodStatus parses the output of `crictl inspectp -o json`.
func ParsePodStatus(out []byte) (PodStatus, error) {
	var ps PodStatus
	if err := json.Unmarshal(out, &ps); err != nil {
		return PodStatus{}, fmt.Errorf("crictl inspectp: %w\n%s", err, out)
	}
	return ps, nil
}

// IPs returns the sandbox's IPs, status.network.ip first, then additionalIps; none without a
// network status.
func (ps PodStatus) IPs() ([]netip.Addr, error) {
	n := ps.Status.Network
	if n == nil || n.IP == "" {
		return nil, nil
	}
	all := []string{n.IP}
	for _, a := range n.AdditionalIPs {
		all = append(all, a.IP)
	}
	out := make([]netip.Addr, 0, len(all))
	for _, s := range all {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: IP %q: %w", ps.Status.ID, s, err)
		}
		out = append(out, ip)
	}
	return out, nil
}

// Inspectp runs `crictl inspectp`.
func (s *Server) Inspectp(id string) PodStatus {
	s.T.Helper()
	ps, err := ParsePodStatus([]byte(s.MustCrictl("inspectp", "-o", "json", id)))
	if err != nil {
		s.T.Fatal(err)
	}
	return ps
}

// PodIP returns the pod's IP from crictl inspectp, checking it lies in the network's subnet.
func (s *Server) PodIP(id string) net.IP {
	s.T.Helper()
	ps := s.Inspectp(id)
	if ps.Status.Network == nil {
		s.T.Fatalf("crictl inspectp %s: no network status", id)
	}
	ip := net.ParseIP(ps.Status.Network.IP)
	if ip == nil || !s.Net.Subnet.Contains(ip) {
		s.T.Fatalf("pod %s has IP %q, want one in %s", id, ps.Status.Network.IP, s.Net.Subnet)
	}
	return ip
}

// ListedPod is one sandbox of `crictl pods -o json`.
type ListedPod struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// ListPods runs `crictl pods -o json`.
func (s *Server) ListPods(ctx context.Context) ([]ListedPod, error) {
	out, err := s.CrictlCtx(ctx, "pods", "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []ListedPod `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("crictl pods -o json: %w\n%s", err, out)
	}
	return l.Items, nil
}
