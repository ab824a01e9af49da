//go:build linux && k8s_e2e

package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/framework"
)

// webManifest is a Deployment of agnhost web servers spread over the nodes, behind a
// ClusterIP Service and a NodePort one.
const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %[1]d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.66.1
        args: ["netexec", "--http-port=8080"]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web-nodeport
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
`

// webPod is what the checks read of a pod of the web Deployment.
type webPod struct {
	Name, Node, IP string
	Ready          bool
}

// webPods lists the web Deployment's pods that are not terminating.
func webPods(ctx context.Context, c *framework.Cluster) ([]webPod, error) {
	out, err := c.Kubectl(ctx, "get", "pods", "-l", "app=web", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
			Status struct {
				PodIP      string `json:"podIP"`
				Conditions []struct {
					Type, Status string
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	var pods []webPod
	for _, it := range list.Items {
		if it.Metadata.DeletionTimestamp != nil {
			continue
		}
		p := webPod{Name: it.Metadata.Name, Node: it.Spec.NodeName, IP: it.Status.PodIP}
		for _, cond := range it.Status.Conditions {
			if cond.Type == "Ready" {
				p.Ready = cond.Status == "True"
			}
		}
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// waitWebReady waits until the web Deployment has want pods, every one Ready with an IP, and
// returns them.
func waitWebReady(t *testing.T, c *framework.Cluster, want int, d time.Duration) []webPod {
	t.Helper()
	var pods []webPod
	var last string
	if !framework.WaitUntil(d, func() bool {
		var err error
		if pods, err = webPods(t.Context(), c); err != nil {
			last = err.Error()
			return false
		}
		ready := 0
		for _, p := range pods {
			if p.Ready && p.IP != "" {
				ready++
			}
		}
		last = fmt.Sprintf("%d of %d pods Ready with an IP: %+v", ready, len(pods), pods)
		return ready == want && len(pods) == want
	}) {
		t.Fatalf("the web Deployment: %s", last)
	}
	return pods
}

// checkReservations waits until host-local's reservations on every node are exactly the IPs of
// the pods there: nothing left reserved by a pod that is gone.
func checkReservations(t *testing.T, c *framework.Cluster, d time.Duration) {
	t.Helper()
	var last string
	if !framework.WaitUntil(d, func() bool {
		out, err := c.Kubectl(t.Context(), "get", "pods", "-A", "-o", "json")
		if err != nil {
			last = err.Error()
			return false
		}
		var list struct {
			Items []struct {
				Spec struct {
					NodeName    string `json:"nodeName"`
					HostNetwork bool   `json:"hostNetwork"`
				} `json:"spec"`
				Status struct {
					PodIP string `json:"podIP"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			last = err.Error()
			return false
		}
		want := map[string][]string{}
		for _, p := range list.Items {
			if !p.Spec.HostNetwork && p.Status.PodIP != "" {
				want[p.Spec.NodeName] = append(want[p.Spec.NodeName], p.Status.PodIP)
			}
		}
		for _, n := range c.Nodes {
			have := reservations(t, n)
			w := want[n.Name]
			sort.Strings(w)
			if !slices.Equal(have, w) {
				last = fmt.Sprintf("node %s: host-local holds %v, its pods have %v", n.Name, have, w)
				return false
			}
		}
		return true
	}) {
		t.Errorf("reservations: %s", last)
	}
}

// checkServiceRoutes checks that the web Service, from node 0, and the NodePort, on every
// node's address, reach every pod of pods: agnhost's /hostname names the pod that answered.
func checkServiceRoutes(t *testing.T, c *framework.Cluster, pods []webPod) {
	t.Helper()
	ip, err := c.Kubectl(t.Context(), "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	targets := []string{ip + ":80"}
	for _, n := range c.Nodes {
		targets = append(targets, n.IP+":30080")
	}
	for _, target := range targets {
		seen := map[string]bool{}
		var last string
		framework.WaitUntil(time.Minute, func() bool {
			out, err := c.InNode(c.Nodes[0], "curl", "-s", "--max-time", "2", "http://"+target+"/hostname")
			if err != nil {
				last = err.Error()
				return false
			}
			seen[strings.TrimSpace(out)] = true
			for _, p := range pods {
				if !seen[p.Name] {
					return false
				}
			}
			return true
		})
		for _, p := range pods {
			if !seen[p.Name] {
				t.Errorf("%s never reached pod %s (%s on %s); answered: %v; last error: %s", target, p.Name, p.IP, p.Node, seen, last)
			}
		}
	}
}

// TestNodeFaults runs, on a cluster of each build, a Deployment spread over both nodes behind
// Services through what a node meets: its containerd SIGKILLed and started again (the pods keep
// their sandboxes and IPs), and the node rebooted (every pod's netns gone with the mount
// namespace; the kubelet, kube-proxy and containerd started again). After each, every pod is
// Ready with an IP, the Services reach every pod, and host-local holds exactly the pods' IPs.
func TestNodeFaults(t *testing.T) {
	for _, build := range framework.Builds {
		t.Run(build, func(t *testing.T) {
			t.Parallel()
			c := framework.StartCluster(t, env, build, 2)
			if err := c.KubectlApply(t.Context(), fmt.Sprintf(webManifest, 4)); err != nil {
				t.Fatal(err)
			}
			before := waitWebReady(t, c, 4, 3*time.Minute)
			checkServiceRoutes(t, c, before)
			checkReservations(t, c, time.Minute)
			n := c.Nodes[1]

			// Not subtests: the cluster's helpers fail the build's test, not a subtest's.
			t.Log("containerd on node1 SIGKILLed and started again")
			{
				n.Containerd.Kill(syscall.SIGKILL)
				n.Containerd.Start()
				after := waitWebReady(t, c, 4, 3*time.Minute)
				if !slices.Equal(after, before) {
					t.Errorf("the pods changed with containerd's restart:\nbefore %+v\nafter  %+v", before, after)
				}
				checkServiceRoutes(t, c, after)
				checkReservations(t, c, time.Minute)
			}

			t.Log("node1 rebooted")
			{
				c.RebootNode(n)
				if old := reservations(t, n); len(old) == 0 {
					t.Errorf("node %s: no reservation on disk after the reboot: the check would prove nothing", n.Name)
				}
				c.RestartNode(n)
				after := waitWebReady(t, c, 4, 4*time.Minute)
				checkServiceRoutes(t, c, after)
				checkReservations(t, c, 2*time.Minute)
			}
		})
	}
}
