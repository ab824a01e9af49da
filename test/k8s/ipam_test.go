//go:build linux && (k8s_e2e || k8s_bench)

package k8s

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

// reservations are the addresses host-local holds for node n's pods.
func reservations(t *testing.T, n *framework.ClusterNode) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.IPAMDir, "kindnet"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if strings.Count(e.Name(), ".") == 3 {
			ips = append(ips, e.Name())
		}
	}
	sort.Strings(ips)
	return ips
}
