//go:build linux && k8s_e2e

package k8s

import (
	"bufio"
	"cmp"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// specList is test/k8s/specs.txt: the focus and skip regexps of the upstream run.
type specList struct {
	Focus, Skip []string
}

// readSpecList reads the spec list at path.
func readSpecList(path string) (specList, error) {
	f, err := os.Open(path)
	if err != nil {
		return specList{}, err
	}
	defer f.Close()
	var l specList
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, re, ok := strings.Cut(line, " ")
		switch {
		case ok && kind == "focus":
			l.Focus = append(l.Focus, strings.TrimSpace(re))
		case ok && kind == "skip":
			l.Skip = append(l.Skip, strings.TrimSpace(re))
		default:
			return specList{}, fmt.Errorf("%s:%d: want \"focus REGEX\" or \"skip REGEX\", have %q", path, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return specList{}, err
	}
	if len(l.Focus) == 0 {
		return specList{}, fmt.Errorf("%s: no focus", path)
	}
	return l, nil
}

// junit is what the suite reads of the JUnit report the e2e framework writes.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Status  string    `xml:"status,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// readJUnit returns the state of every spec the report at path names: passed, failed or
// skipped. The suite's own setup and teardown nodes are left out.
func readJUnit(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r junit
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]string{}
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if !strings.HasPrefix(c.Name, "[It] ") && !strings.HasPrefix(c.Name, "[sig-") {
				// [SynchronizedBeforeSuite], [ReportAfterSuite] and the like.
				if c.Failure != nil || c.Error != nil {
					out[c.Name] = "failed"
				}
				continue
			}
			name := strings.TrimPrefix(c.Name, "[It] ")
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout":
				out[name] = "failed"
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				out[name] = "skipped"
			default:
				out[name] = "passed"
			}
		}
	}
	return out, nil
}

// runUpstream runs e2e.test with the spec list on cluster c, from node 0's network namespace,
// its specs in parallel ginkgo processes, and returns the state of each spec. The JUnit report
// and the run's output are kept in dir.
func runUpstream(t *testing.T, c *framework.Cluster, l specList, dir string) map[string]string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A report or output of an earlier run must not stand in for this one's.
	report, log := filepath.Join(dir, "junit_01.xml"), filepath.Join(dir, "e2e.log")
	for _, f := range []string{report, log} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	// ginkgo's own timeout, within the test binary's (whose end skips every cleanup), leaving
	// time for the clusters' cleanups and the other tests.
	timeout := 70 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(d)-15*time.Minute)
	}
	if timeout <= 0 {
		t.Fatalf("less than 15 minutes left of the test binary's timeout: no time for the e2e run")
	}
	procs := framework.EnvInt(t, "CNISHIM_K8S_E2E_PROCS", 4)
	args := []string{filepath.Join(env.Kubernetes, "bin", "ginkgo"), "--procs", fmt.Sprint(procs), "--timeout", timeout.Round(time.Second).String(),
		"--no-color", "--silence-skips", "--poll-progress-after", "5m"}
	for _, f := range l.Focus {
		args = append(args, "--focus", f)
	}
	for _, s := range l.Skip {
		args = append(args, "--skip", s)
	}
	args = append(args, filepath.Join(env.Kubernetes, "bin", "e2e.test"), "--",
		"--provider", "skeleton", "--kubeconfig", c.Kubeconfig,
		"--kubectl-path", filepath.Join(env.Kubernetes, "bin", "kubectl"),
		"--minStartupPods", "0", "--num-nodes", fmt.Sprint(len(c.Nodes)),
		"--report-dir", dir, "--disable-log-dump", "--dump-logs-on-failure=false")
	started := time.Now()
	err := c.RunInNode0(t, log, args...)
	t.Logf("e2e.test on the %s cluster: %s, output in %s", c.Build, time.Since(started).Round(time.Second), log)
	states, jerr := readJUnit(report)
	if jerr != nil {
		t.Fatalf("the e2e run's report: %v (run: %v); output tail:\n%s", jerr, err, framework.TailFile(log, 6000))
	}
	if err != nil {
		t.Logf("e2e.test: %v (its report says which specs failed)", err)
	}
	return states
}

// TestUpstreamE2E runs the spec list on a cluster of each build at once, side by side, and
// checks that the cnishim cluster passes every spec it focuses (and so every spec the stock
// cluster passes), and that each run ran at least one spec.
func TestUpstreamE2E(t *testing.T) {
	l, err := readSpecList("specs.txt")
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]map[string]string{}
	var mu sync.Mutex
	t.Run("clusters", func(t *testing.T) {
		for _, build := range framework.Builds {
			t.Run(build, func(t *testing.T) {
				t.Parallel()
				c := framework.StartCluster(t, env, build, 2)
				states := runUpstream(t, c, l, filepath.Join(env.Repo, "_output", "k8s-e2e", build))
				mu.Lock()
				results[build] = states
				mu.Unlock()
			})
		}
	})
	// The specs either run ran: those the spec list leaves out are reported skipped.
	var names []string
	for _, states := range results {
		for n, st := range states {
			if st != "skipped" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	var table strings.Builder
	counts := map[string]map[string]int{}
	for _, b := range framework.Builds {
		counts[b] = map[string]int{}
	}
	for _, n := range names {
		fmt.Fprintf(&table, "%-8s %-8s %s\n", results[framework.StockContainerd][n], results[framework.CnishimContainerd][n], n)
		for _, b := range framework.Builds {
			counts[b][results[b][n]]++
		}
	}
	t.Logf("stock    cnishim  spec\n%s", table.String())
	for _, b := range framework.Builds {
		t.Logf("%s: %d passed, %d failed, %d skipped", b, counts[b]["passed"], counts[b]["failed"], counts[b]["skipped"])
		if results[b] != nil && counts[b]["passed"] == 0 {
			t.Errorf("%s: no spec passed: the focus matched nothing or the run broke", b)
		}
	}
	// Every spec either cluster ran passes on the cnishim cluster (so every spec stock passes).
	for _, n := range names {
		if got := results[framework.CnishimContainerd][n]; got != "passed" {
			t.Errorf("the cnishim cluster: %q %s (stock: %s)", n, cmp.Or(got, "not run"), cmp.Or(results[framework.StockContainerd][n], "not run"))
		}
	}
}
