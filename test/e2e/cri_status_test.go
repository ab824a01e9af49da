//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// An empty conf dir: crictl info says NetworkReady false with the reason; after a conflist is
// copied in with plain cp (written in place, not renamed), it says true, and shows the chosen
// network. The socket is 0600 and the state dir 0700.
func TestCRINetworkReadyAfterPlainCopy(t *testing.T) {
	n := newTestNet(t, "e2e-ready")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freeHostPort(t))
	s := startServer(t, n, "--max-parallel-setups", "3", "--max-parallel-teardowns", "5", "--metrics-bind-address", metricsAddr)

	fi, err := os.Stat(s.Sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s mode = %v, want a socket with mode 0600", s.Sock, fi.Mode())
	}
	if fi, err := os.Stat(s.StateDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir %s mode = %v, %v; want 0700", s.StateDir, fi.Mode().Perm(), err)
	}

	ready, reason, msg := s.NetworkReady()
	if ready || reason != "NetworkPluginNotReady" || !strings.Contains(msg, s.ConfDir) {
		t.Fatalf("with an empty conf dir: NetworkReady = %v, reason %q, message %q; want false, NetworkPluginNotReady, a message naming %s",
			ready, reason, msg, s.ConfDir)
	}
	if ci := s.Info(); ci.LastLoadError == "" || ci.Config != nil {
		t.Fatalf("with an empty conf dir: lastLoadError %q, config %+v", ci.LastLoadError, ci.Config)
	}

	s.InstallConf()
	took := s.WaitNetworkReady(true)
	t.Logf("NetworkReady became true %v after cp", took)

	ci := s.Info()
	wantFile := filepath.Join(s.ConfDir, "10-"+n.Name+".conflist")
	if ci.Config == nil || ci.Config.Name != n.Name || ci.Config.File != wantFile || ci.Config.CNIVersion != "1.0.0" ||
		!slices.Equal(ci.Config.Plugins, []string{"bridge", "portmap"}) {
		t.Fatalf("crictl info config = %+v, want network %q from %s", ci.Config, n.Name, wantFile)
	}

	// cnishim status reads the same directory without the server, and asks the server too.
	out, err := exec.Command(env.Cnishim, "status", "-o", "json",
		"--cni-conf-dir", s.ConfDir, "--cni-bin-dir", env.CNIBin, "--listen", "unix://"+s.Sock).Output()
	if err != nil {
		t.Fatalf("cnishim status: %v\n%s", err, out)
	}
	var st struct {
		Ready   bool `json:"ready"`
		Default *struct {
			Name    string   `json:"name"`
			File    string   `json:"file"`
			Plugins []string `json:"plugins"`
		} `json:"default"`
		Server *struct {
			Reachable    bool `json:"reachable"`
			NetworkReady bool `json:"networkReady"`
			Admission    *struct {
				Limits map[string]int `json:"limits"`
				Lanes  []struct {
					Name  string `json:"name"`
					Limit int    `json:"limit"`
				} `json:"lanes"`
			} `json:"admission"`
		} `json:"server"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("cnishim status -o json: %v\n%s", err, out)
	}
	if !st.Ready || st.Default == nil || st.Default.Name != n.Name || st.Default.File != wantFile ||
		st.Server == nil || !st.Server.Reachable || !st.Server.NetworkReady ||
		st.Server.Admission == nil || st.Server.Admission.Limits["add"] != 3 || st.Server.Admission.Limits["del"] != 5 {
		t.Fatalf("cnishim status = %s", out)
	}
	lanes := map[string]int{}
	for _, l := range st.Server.Admission.Lanes {
		lanes[l.Name] = l.Limit
	}
	if lanes["add"] != 3 || lanes["del"] != 5 {
		t.Fatalf("cnishim status admission lanes = %v, want add 3 and del 5 from the server's flags", lanes)
	}

	// Prometheus metrics, from the plugin, its admission lanes and the server.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v, %v", resp.Status, err)
	}
	for _, want := range []string{`cnishim_admission_limit{lane="add"} 3`, `cnishim_pod_sandboxes{state="ready"} 0`, "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
}
