//go:build linux

package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnishim/cnishim/test/cluster/localcluster"
	"github.com/cnishim/cnishim/test/framework"
)

// ipLeakPods, ipLeakWorkers and ipLeakKills size TestRecoverFromIPLeak.
const (
	ipLeakPods    = 100
	ipLeakWorkers = 12
	ipLeakKills   = 4
)

// TestRecoverFromIPLeak mirrors the node e2e test "[sig-node] Restart [Serial] [Slow]
// [Disruptive] Container Runtime Network should recover from ip leak": 100 pods are started
// on one node, 12 runp calls at a time, while its server is SIGKILLed and started again four
// times as they are being made. A runp that fails is retried once the server answers, as the
// kubelet does: it keeps a sandbox of the pod that came up ready, else runs the next attempt.
// In the end every pod has one ready sandbox with both IPs, host-local holds exactly the ready
// sandboxes' IPs, and once every sandbox is removed, nothing is left on the node.
func TestRecoverFromIPLeak(t *testing.T) {
	n := cl.Node(1)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if err := n.RemovePods(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("remove the pods: %v", err)
		}
	})
	keepServer(t, n) // runs before RemovePods, cleanups being last in, first out
	dir := t.TempDir()
	start := time.Now()

	var done, failedCalls atomic.Int32
	workersDone := make(chan struct{})
	// Kill the server each time another fifth of the pods is up, at least 250ms after it came
	// back (set-ups are in flight again by then), so that every kill lands while pods are being
	// made: on flannel (bridge) pods come up several times faster than on kindnet (ptp), and a
	// full second between kills let them all be up before the last one.
	killsAt := make(chan int32, ipLeakKills)
	var killer sync.WaitGroup
	killer.Go(func() {
		defer close(killsAt)
		for k := int32(1); k <= ipLeakKills; k++ {
			time.Sleep(250 * time.Millisecond)
			for done.Load() < k*ipLeakPods/(ipLeakKills+1) {
				select {
				case <-workersDone:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			killsAt <- done.Load()
			t.Logf("kill %d at %v", k, time.Since(start).Round(time.Millisecond))
			if err := n.KillServer(); err != nil {
				t.Errorf("kill %d: %v", k, err)
				return
			}
			if err := n.StartServer(ctx); err != nil {
				t.Errorf("start after kill %d: %v", k, err)
				return
			}
			t.Logf("started at %v", time.Since(start).Round(time.Millisecond))
		}
	})

	names := make(chan string)
	go func() {
		defer close(names)
		for i := range ipLeakPods {
			select {
			case names <- fmt.Sprintf("leak-%03d", i):
			case <-ctx.Done():
				return
			}
		}
	}()
	var workers sync.WaitGroup
	for range ipLeakWorkers {
		workers.Go(func() {
			for name := range names {
				if err := runUntilReady(ctx, n, dir, name, &failedCalls); err != nil {
					t.Error(err)
					continue
				}
				done.Add(1)
			}
		})
	}
	workers.Wait()
	close(workersDone)
	killer.Wait()
	var kills []int32
	for k := range killsAt {
		kills = append(kills, k)
	}
	t.Logf("kills when %v of %d pods were up; %d runp calls failed and were retried; all up in %v", kills, ipLeakPods, failedCalls.Load(), time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	if len(kills) != ipLeakKills || kills[len(kills)-1] >= ipLeakPods {
		t.Fatalf("kills when %v pods were up; want %d kills, the last before all %d were up", kills, ipLeakKills, ipLeakPods)
	}

	sbs, err := listSandboxes(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	readyOf := map[string][]string{}
	var wantIPs []string
	for _, sb := range sbs {
		if sb.State != "SANDBOX_READY" {
			continue
		}
		readyOf[sb.Name] = append(readyOf[sb.Name], sb.ID)
		st, err := inspect(ctx, n, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.IPs) != 2 {
			t.Errorf("pod %s (sandbox %s): IPs %v; want one of each family", sb.Name, sb.ID, st.IPs)
		}
		for _, ip := range st.IPs {
			wantIPs = append(wantIPs, ip.String())
		}
	}
	for i := range ipLeakPods {
		name := fmt.Sprintf("leak-%03d", i)
		if ids := readyOf[name]; len(ids) != 1 {
			t.Errorf("pod %s: ready sandboxes %v; want one", name, ids)
		}
	}
	// Every reservation is a ready sandbox's IP, and every ready sandbox's IP is reserved:
	// the cut-off set-ups were released on recovery.
	// A kill of the server's process group may land inside host-local between creating a
	// reservation and writing its owner; such an empty file is host-local's, not the runtime's
	// to release, and is removed here as the crash soak does.
	st := reservations(n)
	if empty := framework.RemoveEmptyReservations(t, ipamDir(n), st); empty > 0 {
		st = reservations(n)
	}
	var reserved []string
	for _, ip := range st.IPs {
		_, addr, _ := strings.Cut(ip, "/")
		reserved = append(reserved, addr)
	}
	slices.Sort(reserved)
	slices.Sort(wantIPs)
	if !slices.Equal(reserved, wantIPs) {
		t.Errorf("host-local on %s holds %d reservations for %d ready pods' %d IPs:\nreserved %v\nready    %v", n.Name, len(reserved), len(readyOf), len(wantIPs), reserved, wantIPs)
	}

	t.Logf("%d sandboxes listed and inspected at %v", len(sbs), time.Since(start).Round(time.Millisecond))
	// Remove every sandbox, the cut-off ones the kubelet's garbage collection would remove
	// too, 12 at a time.
	ids := make(chan string)
	var wg sync.WaitGroup
	for range ipLeakWorkers {
		wg.Go(func() {
			for id := range ids {
				if _, err := crictl(ctx, n, "rmp", "-f", id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, sb := range sbs {
		ids <- sb.ID
	}
	close(ids)
	wg.Wait()
	t.Logf("all removed at %v", time.Since(start).Round(time.Millisecond))
	if leaks := nodeLeaks(ctx, n); len(leaks) > 0 {
		t.Errorf("left on %s after removing every pod:\n%s", n.Name, strings.Join(leaks, "\n"))
	}
}

// runUntilReady runs the pod name on n as the kubelet would across restarts of the runtime: a
// failed runp is retried, after checking that no sandbox of the pod came up ready after all, as
// the next attempt.
func runUntilReady(ctx context.Context, n *localcluster.Node, dir, name string, failed *atomic.Int32) error {
	var last error
	for try := 0; ctx.Err() == nil; try++ {
		attempt := 0
		if try > 0 {
			failed.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			sbs, err := listSandboxes(ctx, n)
			if err != nil {
				last = err
				continue // the server is down still
			}
			for _, sb := range sbs {
				if sb.Name != name {
					continue
				}
				if sb.State == "SANDBOX_READY" {
					return nil
				}
				attempt = max(attempt, sb.Attempt+1)
			}
		}
		cfg, err := writePodConfig(dir, name, attempt)
		if err != nil {
			return err
		}
		if _, last = crictl(ctx, n, "runp", cfg); last == nil {
			return nil
		}
	}
	return fmt.Errorf("pod %s never came up: %w", name, last)
}

// listed is a sandbox as crictl pods lists it.
type listed struct {
	ID      string
	Name    string
	Attempt int
	State   string
}

// listSandboxes lists every sandbox on n.
func listSandboxes(ctx context.Context, n *localcluster.Node) ([]listed, error) {
	out, err := crictl(ctx, n, "pods", "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []struct {
			ID       string `json:"id"`
			State    string `json:"state"`
			Metadata struct {
				Name    string `json:"name"`
				Attempt int    `json:"attempt"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("%s: crictl pods: %w\n%s", n.Name, err, out)
	}
	var sbs []listed
	for _, it := range l.Items {
		sbs = append(sbs, listed{ID: it.ID, Name: it.Metadata.Name, Attempt: it.Metadata.Attempt, State: it.State})
	}
	return sbs, nil
}
