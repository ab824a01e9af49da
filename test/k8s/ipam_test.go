//go:build linux && (k8s_e2e || k8s_bench)

package k8s

import (
	"testing"

	"github.com/cnishim/cnishim/test/framework"
)

// reservations are the addresses host-local holds for node n's pods, sorted.
func reservations(t *testing.T, n *framework.ClusterNode) []string {
	t.Helper()
	ips, err := n.Reservations()
	if err != nil {
		t.Fatal(err)
	}
	return ips
}
