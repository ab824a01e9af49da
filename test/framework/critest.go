//go:build linux

package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CritestResult is what one critest run reported: each spec that ran, by its full name (the
// containers' texts and the spec's, "[k8s.io] " dropped), with its state ("passed",
// "failed", ...), and critest's output.
type CritestResult struct {
	States map[string]string
	Output string
}

// Passed returns the specs that passed, sorted.
func (r CritestResult) Passed() []string {
	var out []string
	for name, st := range r.States {
		if st == "passed" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Failed returns the specs that ran and did not pass, sorted, each with its state.
func (r CritestResult) Failed() []string {
	var out []string
	for name, st := range r.States {
		if st != "passed" {
			out = append(out, name+" ("+st+")")
		}
	}
	slices.Sort(out)
	return out
}

// RunCritest runs critest against the CRI socket sock, in dir, with the focus and skip regexps
// (and more flags), bounded by timeout, and reads its JSON report. A non-zero exit is not an
// error (failed specs make one); an error means critest did not run or wrote no report.
func RunCritest(ctx context.Context, critest, dir, sock string, focus, skip []string, timeout time.Duration, more ...string) (CritestResult, error) {
	report := filepath.Join(dir, "critest-report.json")
	args := []string{
		"-runtime-endpoint", "unix://" + sock,
		"-image-endpoint", "unix://" + sock,
		"--ginkgo.no-color",
		"--ginkgo.v",
		"--ginkgo.json-report", report,
	}
	for _, f := range focus {
		args = append(args, "--ginkgo.focus", f)
	}
	for _, s := range skip {
		args = append(args, "--ginkgo.skip", s)
	}
	args = append(args, more...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, critest, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	res := CritestResult{States: map[string]string{}, Output: out.String()}
	b, err := os.ReadFile(report)
	if err != nil {
		return res, fmt.Errorf("critest %s: no report (%v): %w", strings.Join(args, " "), runErr, err)
	}
	var rep []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeText            string
			LeafNodeType            string
			State                   string
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return res, fmt.Errorf("critest report %s: %w", report, err)
	}
	for _, suite := range rep {
		for _, sp := range suite.SpecReports {
			if sp.LeafNodeType != "It" || sp.State == "skipped" || sp.State == "pending" {
				continue
			}
			name := strings.Join(append(slices.Clone(sp.ContainerHierarchyTexts), sp.LeafNodeText), " ")
			res.States[strings.TrimPrefix(name, "[k8s.io] ")] = sp.State
		}
	}
	return res, nil
}
