//go:build linux

package framework

import (
	"fmt"
	"strings"
	"testing"
)

// Check is one behaviour a suite checks on both containerd builds (StockContainerd,
// CnishimContainerd), side by side.
type Check struct {
	// Name names the check in the table and its subtests.
	Name string
	// StockIssue is the upstream issue of stock containerd's (or go-cni's) known failure of
	// the check; stock failing a check without one fails the test, as the harness is then
	// suspect.
	StockIssue string
	// CnishimOnly: go-cni has no such feature; the check runs on the cnishim build alone.
	CnishimOnly bool
	// Run runs the check on a node of build. It fails the test (t.Fatal) when the harness
	// cannot do its part, and returns the check's verdict: nil when the build behaves, else
	// what it did wrong.
	Run func(t *testing.T, build string) error
}

// RunSideBySide runs every check on stock containerd and then on containerd with cnishim, each
// as a subtest, and logs the side-by-side table, whose build columns are headed stock and
// cnishim. A check the cnishim build fails fails the test; one stock fails is its known
// behaviour when the check names the upstream issue.
func RunSideBySide(t *testing.T, stock, cnishim string, checks []Check) {
	type verdict struct{ stock, cnishim string }
	table := make([]verdict, len(checks))
	for i, ck := range checks {
		for _, build := range Builds {
			if build == StockContainerd && ck.CnishimOnly {
				table[i].stock = "n/a (go-cni cannot)"
				continue
			}
			got := "not run"
			ok := t.Run(strings.ReplaceAll(ck.Name, " ", "_")+"/"+build, func(t *testing.T) {
				got = "PASS"
				defer func() {
					if t.Skipped() {
						got = "SKIP"
					}
				}()
				err := ck.Run(t, build)
				switch {
				case err == nil:
					if build == StockContainerd && ck.StockIssue != "" {
						t.Logf("stock containerd passes a check it is known to fail (%s)", ck.StockIssue)
					}
				case build == StockContainerd && ck.StockIssue != "":
					got = "FAIL (known: " + ck.StockIssue + ")"
					t.Logf("stock containerd fails, as known (%s): %v", ck.StockIssue, err)
				default:
					t.Errorf("containerd %s: %s: %v", build, ck.Name, err)
				}
			})
			if !ok && got == "PASS" {
				got = "FAIL"
			}
			if build == StockContainerd {
				table[i].stock = got
			} else {
				table[i].cnishim = got
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| check | %s | %s |\n|---|---|---|\n", stock, cnishim)
	for i, ck := range checks {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", ck.Name, table[i].stock, table[i].cnishim)
	}
	t.Log(b.String())
}
