//go:build linux

package criserver

import (
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A runtime without containers or images answers the read-only calls about them: empty lists,
// NotFound for a container, no image, and the state directory's filesystem.
func TestContainerAndImageReads(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	ctx := t.Context()
	e.run(t, podConfig("web", 0, nil)) // a sandbox is no container

	tests := []struct {
		name string
		call func(t *testing.T)
	}{
		{"ListContainers", func(t *testing.T) {
			resp, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			if err != nil || len(resp.GetContainers()) != 0 {
				t.Fatalf("ListContainers = %v, %v; want none", resp, err)
			}
		}},
		{"ListContainerStats", func(t *testing.T) {
			resp, err := e.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			if err != nil || len(resp.GetStats()) != 0 {
				t.Fatalf("ListContainerStats = %v, %v; want none", resp, err)
			}
		}},
		{"ContainerStatus", func(t *testing.T) {
			_, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "abc"})
			wantCode(t, err, codes.NotFound, "container abc not found")
		}},
		{"ContainerStats", func(t *testing.T) {
			_, err := e.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "abc"})
			wantCode(t, err, codes.NotFound, "container abc not found")
		}},
		{"ListImages", func(t *testing.T) {
			resp, err := e.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
			if err != nil || len(resp.GetImages()) != 0 {
				t.Fatalf("ListImages = %v, %v; want none", resp, err)
			}
		}},
		{"ImageStatus", func(t *testing.T) {
			resp, err := e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1"}})
			if err != nil || resp.GetImage() != nil {
				t.Fatalf("ImageStatus = %v, %v; want no image and no error", resp, err)
			}
		}},
		{"ImageFsInfo", func(t *testing.T) {
			resp, err := e.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			fss := resp.GetImageFilesystems()
			if len(fss) != 1 {
				t.Fatalf("ImageFsInfo = %v, want one filesystem", resp)
			}
			fs := fss[0]
			// The state dir holds files, so its filesystem has bytes and inodes in use.
			if fs.GetFsId().GetMountpoint() != e.stateDir || fs.GetTimestamp() <= 0 ||
				fs.GetUsedBytes().GetValue() == 0 || fs.GetInodesUsed().GetValue() == 0 {
				t.Fatalf("ImageFsInfo = %v, want mountpoint %s, a timestamp and usage", fs, e.stateDir)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.call)
	}
}

// addVeths adds a veth pair eth0 (192.0.2.1/24) and net1 to the namespace at path, and sends
// payload bytes of UDP out of eth0 to 192.0.2.2, a static neighbour no one answers for: net1
// receives and drops them. Nothing leaves the namespace.
func addVeths(t *testing.T, path string, payload int) {
	t.Helper()
	err := netns.Do(path, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "net1"}); err != nil {
			return err
		}
		for _, name := range []string{"net1", "eth0"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
			if name != "eth0" {
				continue
			}
			addr, _ := netlink.ParseAddr("192.0.2.1/24")
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
			mac, _ := net.ParseMAC("02:00:00:00:00:02")
			if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: net.ParseIP("192.0.2.2"), HardwareAddr: mac}); err != nil {
				return err
			}
		}
		c, err := net.Dial("udp", "192.0.2.2:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, payload))
		return err
	})
	if err != nil {
		t.Fatalf("veths in %s: %v", path, err)
	}
}

func TestPodSandboxStats(t *testing.T) {
	e := newEnv(t, &fakeNetwork{})
	ctx := t.Context()
	ready := e.run(t, podConfig("ready", 0, map[string]string{"app": "web"}))
	stopped := e.run(t, podConfig("stopped", 0, map[string]string{"app": "db"}))
	hostCfg := podConfig("host", 0, map[string]string{"app": "web"})
	hostCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	host := e.run(t, hostCfg)
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: stopped}); err != nil {
		t.Fatal(err)
	}
	const payload = 1000
	addVeths(t, filepath.Join(e.netnsDir, ready), payload)

	t.Run("ready", func(t *testing.T) {
		resp, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: ready})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.GetStats()
		wantAttributes(t, st, ready, "ready")
		nu := st.GetLinux().GetNetwork()
		if nu.GetTimestamp() <= 0 {
			t.Errorf("network timestamp = %d, want > 0", nu.GetTimestamp())
		}
		def := nu.GetDefaultInterface()
		if def.GetName() != "eth0" || def.GetTxBytes().GetValue() < payload || def.GetRxBytes() == nil ||
			def.GetTxErrors() == nil || def.GetRxErrors() == nil {
			t.Errorf("default interface = %v, want eth0 with every counter and at least %d bytes sent", def, payload)
		}
		others := nu.GetInterfaces()
		if len(others) != 1 || others[0].GetName() != "net1" || others[0].GetRxBytes().GetValue() < payload {
			t.Errorf("other interfaces = %v, want only net1 (no loopback, no default), with at least %d bytes received", others, payload)
		}
	})
	for _, tc := range []struct{ name, id string }{{"stopped", stopped}, {"host", host}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			wantAttributes(t, resp.GetStats(), tc.id, tc.name)
			if resp.GetStats().GetLinux() != nil {
				t.Errorf("stats = %v, want no network stats", resp.GetStats())
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, err := e.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "f00"})
		wantCode(t, err, codes.NotFound, "pod sandbox stats")
	})

	lists := []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{"all", nil, []string{ready, stopped, host}},
		{"by ID", &runtimeapi.PodSandboxStatsFilter{Id: ready}, []string{ready}},
		{"by ID prefix", &runtimeapi.PodSandboxStatsFilter{Id: stopped[:12]}, []string{stopped}},
		{"by label", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "web"}}, []string{ready, host}},
		{"by ID and label", &runtimeapi.PodSandboxStatsFilter{Id: stopped, LabelSelector: map[string]string{"app": "web"}}, nil},
		{"no match", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "none"}}, nil},
	}
	for _, tc := range lists {
		t.Run("list "+tc.name, func(t *testing.T) {
			resp, err := e.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, st := range resp.GetStats() {
				got = append(got, st.GetAttributes().GetId())
				if (st.GetLinux().GetNetwork() != nil) != (st.GetAttributes().GetId() == ready) {
					t.Errorf("sandbox %s: network stats %v; want them for the ready sandbox only", st.GetAttributes().GetId(), st.GetLinux())
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("ListPodSandboxStats(%v) = %v, want %v", tc.filter, got, want)
			}
		})
	}
}

func wantAttributes(t *testing.T, st *runtimeapi.PodSandboxStats, id, name string) {
	t.Helper()
	a := st.GetAttributes()
	if a.GetId() != id || a.GetMetadata().GetName() != name || a.GetAnnotations()["note"] != name || len(a.GetLabels()) == 0 {
		t.Errorf("attributes = %v, want sandbox %s (%s) with its labels and annotations", a, id, name)
	}
}
