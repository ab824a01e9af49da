//go:build linux

package cluster_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
)

// TestFlanneldRestart mirrors what a kube-flannel DaemonSet rollout does to a node, on the
// flannel network only: flanneld on one node is stopped and started again. It takes its lease
// back (the same subnets in subnet.env and in the node's pod CIDRs), and pods on that node and
// on the others reach each other afterwards, across nodes, in both families, without SNAT;
// a pod made after the restart gets an address of the same subnets and is reached too.
func TestFlanneldRestart(t *testing.T) {
	if cl.Config.Network != "flannel" {
		t.Skipf("flannel only (CLUSTER_NETWORK=flannel runs it); this cluster's network is %s", cl.Config.Network)
	}
	victim := cl.Node(1)
	before, err := localcluster.ReadSubnetFile(victim.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, victim.PodCIDRs) {
		t.Fatalf("node %s: subnet.env holds %v, pod CIDRs are %v", victim.Name, before, victim.PodCIDRs)
	}
	var pods []*pod
	for _, n := range cl.Nodes {
		pods = append(pods, runPod(t, n, "flannel-"+n.Name))
	}
	pid := victim.DaemonPID(localcluster.FlanneldDaemon)
	if pid == 0 {
		t.Fatalf("node %s: flanneld does not run", victim.Name)
	}
	if err := victim.RestartNetworkDaemon(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := victim.DaemonPID(localcluster.FlanneldDaemon); got == 0 || got == pid {
		t.Errorf("node %s: flanneld PID %d after the restart (was %d); want a new one", victim.Name, got, pid)
	}
	after, err := localcluster.ReadSubnetFile(victim.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after, before) {
		t.Errorf("node %s: flanneld leased %v after the restart, had %v: the lease was not reused", victim.Name, after, before)
	}
	pods = append(pods, runPod(t, victim, "flannel-after-restart"))
	last := pods[len(pods)-1]
	for i, ip := range last.IPs {
		if !victim.PodCIDRs[i].Contains(ip) {
			t.Errorf("pod %s made after the restart: IP %s not in %s", last, ip, victim.PodCIDRs[i])
		}
	}
	for _, from := range pods {
		for _, to := range pods {
			if from.node == to.node || (from.node != victim && to.node != victim) {
				continue // across nodes, to or from the restarted one
			}
			for _, fam := range families {
				for _, proto := range []string{"tcp", "udp"} {
					if err := ask(t.Context(), from.NetNS, proto, to.ip(t, fam.v4), netexecPort, to.name, from.ip(t, fam.v4)); err != nil {
						t.Errorf("after flanneld's restart on %s: pod %s to pod %s over %s %s: %v", victim.Name, from, to, fam.name, proto, err)
					}
				}
			}
		}
	}
	t.Logf("node %s: flanneld %d restarted as %d, subnets %s", victim.Name, pid, victim.DaemonPID(localcluster.FlanneldDaemon), fmt.Sprint(after))
}
