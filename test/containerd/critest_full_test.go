//go:build linux && containerd_full

package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// critest's whole suite on stock containerd and on containerd with cnishim: containerd with
// cnishim passes every spec stock containerd passes here. Both pass sets are written to
// _output/containerd-e2e/critest-<build>.txt for docs/critest.md.
func TestCritestAll(t *testing.T) {
	passed := map[string][]string{}
	for _, build := range framework.Builds {
		t.Run(build, func(t *testing.T) {
			n := newNode(t, build)
			res, err := framework.RunCritest(t.Context(), env.Critest, n.Dir, n.Sock, nil, nil, 40*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			passed[build] = res.Passed()
			t.Logf("containerd %s: %d specs passed, %d did not:\n  %s", build, len(res.Passed()), len(res.Failed()), strings.Join(res.Failed(), "\n  "))
			writeReport(t, "critest-"+build+".txt", res)
		})
	}
	stock, cnishim := passed[framework.StockContainerd], passed[framework.CnishimContainerd]
	if len(stock) == 0 || len(cnishim) == 0 {
		t.Fatal("a build ran no spec")
	}
	for _, spec := range stock {
		if !slices.Contains(cnishim, spec) {
			t.Errorf("stock containerd passes %q, containerd with cnishim does not", spec)
		}
	}
}

// writeReport writes a critest run's states, one spec a line, under _output/containerd-e2e.
func writeReport(t *testing.T, name string, res framework.CritestResult) {
	dir := filepath.Join(env.Repo, "_output", "containerd-e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	specs := make([]string, 0, len(res.States))
	for spec := range res.States {
		specs = append(specs, spec)
	}
	slices.Sort(specs)
	for _, spec := range specs {
		fmt.Fprintf(&b, "%s\t%s\n", res.States[spec], spec)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
