//go:build linux && k8s_bench

package k8s

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// scaleManifest is a Deployment of agnhost pause containers spread evenly over the nodes.
const scaleManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: scale
spec:
  replicas: 0
  selector:
    matchLabels: {app: scale}
  template:
    metadata:
      labels: {app: scale}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: scale}}}
      containers:
      - name: pause
        image: registry.k8s.io/e2e-test-images/agnhost:2.66.1
        args: ["pause"]
`

// TestDeploymentScale scales a Deployment on a 3-node cluster of each build from 0 to
// CNISHIM_K8S_SCALE_PODS pods per node (default 100) and back, and reports the time until every
// pod is Ready, and the time until every pod is gone and host-local holds none of their IPs.
// Rounds (CNISHIM_K8S_SCALE_ROUNDS, default 3) alternate the order of the builds; each cell is
// the median of its rounds, in the test log and $CNISHIM_BENCH_OUT/k8s.md (default
// _output/bench). It asserts nothing on time: the machine is shared.
func TestDeploymentScale(t *testing.T) {
	perNode := framework.EnvInt(t, "CNISHIM_K8S_SCALE_PODS", 100)
	rounds := framework.EnvInt(t, "CNISHIM_K8S_SCALE_ROUNDS", 3)
	const nodes = 3
	up := map[string][]time.Duration{}
	down := map[string][]time.Duration{}
	for r := range rounds {
		order := slices.Clone(framework.Builds)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, build := range order {
			t.Run(fmt.Sprintf("round%d/%s", r, build), func(t *testing.T) {
				c := framework.StartCluster(t, env, build, nodes)
				if err := c.KubectlApply(t.Context(), scaleManifest); err != nil {
					t.Fatal(err)
				}
				want := perNode * nodes
				start := time.Now()
				if _, err := c.Kubectl(t.Context(), "scale", "deployment/scale", "--replicas", strconv.Itoa(want)); err != nil {
					t.Fatal(err)
				}
				waitReadyReplicas(t, c, want, 15*time.Minute)
				up[build] = append(up[build], time.Since(start))
				start = time.Now()
				if _, err := c.Kubectl(t.Context(), "scale", "deployment/scale", "--replicas", "0"); err != nil {
					t.Fatal(err)
				}
				var last string
				if !framework.WaitUntil(15*time.Minute, func() bool {
					out, err := c.Kubectl(t.Context(), "get", "pods", "-l", "app=scale", "-o", "name")
					if err != nil || strings.TrimSpace(out) != "" {
						last = fmt.Sprintf("pods left: %d (%v)", strings.Count(out, "\n"), err)
						return false
					}
					n := 0
					for _, node := range c.Nodes {
						n += len(reservations(t, node))
					}
					// CoreDNS's two pods keep theirs.
					last = fmt.Sprintf("%d reservations left (CoreDNS holds 2)", n)
					return n == 2
				}) {
					t.Fatalf("scaled to 0: %s", last)
				}
				down[build] = append(down[build], time.Since(start))
				t.Logf("%s: %d pods Ready in %s, gone and released in %s", build, want, up[build][len(up[build])-1].Round(time.Millisecond), down[build][len(down[build])-1].Round(time.Millisecond))
			})
		}
	}
	ratio := func(a, b time.Duration) string {
		if a == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(b)/float64(a))
	}
	su, cu := framework.Median(up[framework.StockContainerd]), framework.Median(up[framework.CnishimContainerd])
	sd, cd := framework.Median(down[framework.StockContainerd]), framework.Median(down[framework.CnishimContainerd])
	table := fmt.Sprintf("| pods | stock: scaled up to all Ready | cnishim | ratio | stock: scaled to 0, IPs released | cnishim | ratio |\n|---|---|---|---|---|---|---|\n| %d on %d nodes | %s | %s | %s | %s | %s | %s |\n\nMedian of %d rounds per cell, the builds' order alternating by round; a ratio is cnishim's median over stock's.\n",
		perNode*nodes, nodes, su.Round(time.Millisecond), cu.Round(time.Millisecond), ratio(su, cu),
		sd.Round(time.Millisecond), cd.Round(time.Millisecond), ratio(sd, cd), rounds)
	t.Log("\n" + table)
	framework.WriteBenchTable(t, env, "k8s.md", table)
}

// waitReadyReplicas waits until the scale Deployment has want Ready replicas.
func waitReadyReplicas(t *testing.T, c *framework.Cluster, want int, d time.Duration) {
	t.Helper()
	var last string
	if !framework.WaitUntil(d, func() bool {
		out, err := c.Kubectl(t.Context(), "get", "deployment/scale", "-o", "jsonpath={.status.readyReplicas}")
		if err != nil {
			last = err.Error()
			return false
		}
		last = "readyReplicas " + out
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n == want
	}) {
		t.Fatalf("scaled to %d: %s", want, last)
	}
}
