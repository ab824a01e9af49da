package cninetwork

import (
	"fmt"
	"net"
	"reflect"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodFromSandboxConfig(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1"},
		Annotations:  map[string]string{annotationIngressBandwidth: "1M"},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080}},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/u-1"},
	}
	got := PodFromSandboxConfig("sb1", "/var/run/netns/sb1", cfg)
	want := &Pod{
		SandboxID: "sb1", NetNS: "/var/run/netns/sb1",
		Name: "web", Namespace: "prod", UID: "u-1",
		Annotations:  cfg.Annotations,
		PortMappings: cfg.PortMappings,
		DNS:          cfg.DnsConfig,
		CgroupParent: "/kubepods/u-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PodFromSandboxConfig = %+v\nwant %+v", got, want)
	}
	if got := PodFromSandboxConfig("sb2", "", nil); !reflect.DeepEqual(got, &Pod{SandboxID: "sb2"}) {
		t.Fatalf("PodFromSandboxConfig(nil config) = %+v", got)
	}
	if got := PodFromSandboxConfig("sb3", "/ns", &runtimeapi.PodSandboxConfig{}); !reflect.DeepEqual(got, &Pod{SandboxID: "sb3", NetNS: "/ns"}) {
		t.Fatalf("PodFromSandboxConfig(empty config) = %+v", got)
	}
}

func TestCRI(t *testing.T) {
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, x := range s {
			out = append(out, net.ParseIP(x))
		}
		return out
	}
	tests := []struct {
		name string
		st   *PodNetworkStatus
		want *runtimeapi.PodSandboxNetworkStatus
	}{
		{"nil", nil, nil},
		{"no IPs", &PodNetworkStatus{}, nil},
		{"single", &PodNetworkStatus{IPs: ips("10.88.0.5")}, &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.5"}},
		{"dual-stack", &PodNetworkStatus{IPs: ips("10.88.0.5", "fd00::5")},
			&runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.5", AdditionalIps: []*runtimeapi.PodIP{{Ip: "fd00::5"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.CRI(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("CRI() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestPodString(t *testing.T) {
	if got, want := testPod("a1").String(), "pod default/web-a1 (sandbox a1)"; got != want {
		t.Fatalf("String() = %q; want %q", got, want)
	}
	p := &Pod{SandboxID: "x\ny", Name: "a\nb", Namespace: "ns"}
	if got, want := p.String(), `pod "ns/a\nb" (sandbox "x\ny")`; got != want {
		t.Fatalf("String() = %q; want %q", got, want)
	}
}

func TestPodNetworkStatusCloneIsDeep(t *testing.T) {
	v4, v6 := net.ParseIP("10.22.0.5").To4(), net.ParseIP("fd00:22::5")
	for _, tc := range []struct {
		name string
		in   *PodNetworkStatus
	}{
		{name: "nil", in: nil},
		{name: "no attachments", in: &PodNetworkStatus{}},
		{name: "one network", in: &PodNetworkStatus{
			IPs:         []net.IP{v4, v6},
			Attachments: []AttachmentStatus{{Network: "pods", IfName: "eth0", IPs: []net.IP{v4, v6}}},
		}},
		{name: "two networks, one without IPs", in: &PodNetworkStatus{
			IPs: []net.IP{v4},
			Attachments: []AttachmentStatus{
				{Network: "pods", IfName: "eth0", IPs: []net.IP{v4}},
				{Network: "storage", IfName: "net1"},
				{Network: "v6", IfName: "net2", IPs: []net.IP{v6}},
			},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := fmt.Sprint(tc.in)
			out := tc.in.clone()
			if got := fmt.Sprint(out); got != want {
				t.Fatalf("clone = %s, want %s", got, want)
			}
			if out == nil {
				return
			}
			// Scribble over every byte of the copy and grow every slice of it: the original
			// must not change, and neither must the copy's other slices.
			for _, ip := range out.IPs {
				clear(ip)
			}
			out.IPs = append(out.IPs, net.IPv4bcast)
			for i := range out.Attachments {
				for _, ip := range out.Attachments[i].IPs {
					clear(ip)
				}
				out.Attachments[i].IPs = append(out.Attachments[i].IPs, net.IPv4bcast)
				out.Attachments[i].Network = "changed"
			}
			if got := fmt.Sprint(tc.in); got != want {
				t.Errorf("original after modifying the clone = %s, want %s", got, want)
			}
			for i := range out.Attachments {
				if ips := out.Attachments[i].IPs; !ips[len(ips)-1].Equal(net.IPv4bcast) || (len(ips) > 1 && !ips[0].IsUnspecified()) {
					t.Errorf("attachment %d IPs = %v: an append to a neighbour wrote into it", i, ips)
				}
			}
		})
	}
}
