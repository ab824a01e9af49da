package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// With its default flags the server's ADD bound is adaptive: after pods are set up with the
// real plugins it shows, in cnishim status, crictl info and the metrics, what their chains
// spent on CPU (measured from the plugin processes) and why the bound is what it is; a chain
// of bridge and portmap mostly computes; the bound shown is the one its figures give.
func TestCRIAdaptiveSetupBound(t *testing.T) {
	n := newTestNet(t, "e2e-adapt")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freeHostPort(t))
	s := startServer(t, n, "--metrics-bind-address", metricsAddr)
	s.InstallConf()
	s.WaitNetworkReady(true)
	var ids []string
	for i := range 3 {
		ids = append(ids, s.Runp(podSpec{Name: fmt.Sprintf("adapt-%d", i)}))
	}
	defer func() {
		for _, id := range ids {
			s.MustCrictl("stopp", id)
			s.MustCrictl("rmp", id)
		}
	}()

	type addBound struct {
		Adaptive bool    `json:"adaptive"`
		Bound    int     `json:"bound"`
		Floor    int     `json:"floor"`
		Max      int     `json:"max"`
		CPUs     int     `json:"cpus"`
		CPUMS    float64 `json:"chainCpuMs"`
		WaitMS   float64 `json:"chainWaitMs"`
		Chains   int     `json:"chains"`
		Reason   string  `json:"reason"`
	}
	check := func(from string, b *addBound) {
		t.Helper()
		cpus := runtime.NumCPU()
		if b == nil || !b.Adaptive || b.Floor != cpus || b.Max != 128*cpus || b.CPUs != cpus ||
			b.Chains != 3 || b.CPUMS <= 0 || !strings.Contains(b.Reason, "of CPU") {
			t.Fatalf("%s: add bound %+v; want adaptive after 3 chains whose CPU was measured", from, b)
		}
		// The bound is what the figures shown give (how long the chains waited depends on
		// the machine's load, so the test checks the rule, not a value).
		want := min(b.Max, max(b.Floor, int(math.Round(float64(cpus)*(1+1.5*b.WaitMS/b.CPUMS)))))
		if d := b.Bound - want; d < -1 || d > 1 { // the figures are rounded to a microsecond
			t.Fatalf("%s: add bound %d; want %d from %d CPUs, %.3f ms of CPU and %.3f ms of wait", from, b.Bound, want, cpus, b.CPUMS, b.WaitMS)
		}
	}

	out, err := exec.Command(env.Cnishim, "status", "-o", "json",
		"--cni-conf-dir", s.ConfDir, "--cni-bin-dir", env.CNIBin, "--listen", "unix://"+s.Sock).Output()
	if err != nil {
		t.Fatalf("cnishim status: %v\n%s", err, out)
	}
	var st struct {
		Server *struct {
			Admission *struct {
				AddBound *addBound `json:"addBound"`
			} `json:"admission"`
		} `json:"server"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Server == nil || st.Server.Admission == nil {
		t.Fatalf("cnishim status -o json: %v\n%s", err, out)
	}
	check("cnishim status -o json", st.Server.Admission.AddBound)

	text, err := exec.Command(env.Cnishim, "status",
		"--cni-conf-dir", s.ConfDir, "--cni-bin-dir", env.CNIBin, "--listen", "unix://"+s.Sock).Output()
	if err != nil || !strings.Contains(string(text), "ADD bound ") || !strings.Contains(string(text), "adaptive") {
		t.Fatalf("cnishim status does not show the ADD bound: %v\n%s", err, text)
	}

	var info struct {
		Admission *struct {
			AddBound *addBound `json:"addBound"`
		} `json:"admission"`
	}
	if err := json.Unmarshal([]byte(s.MustCrictl("info", "-o", "json")), &info); err != nil || info.Admission == nil {
		t.Fatalf("crictl info: %v", err)
	}
	check("crictl info", info.Admission.AddBound)

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`cnishim_admission_limit{lane="add"} %d`, st.Server.Admission.AddBound.Bound); !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %q", want)
	}
	const cpuSeries = `cnishim_admission_chain_cpu_seconds{lane="add"} `
	_, v, _ := strings.Cut(string(body), cpuSeries)
	v, _, _ = strings.Cut(v, "\n")
	if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
		t.Errorf("/metrics: %s%q; want a CPU time > 0", cpuSeries, v)
	}
}
