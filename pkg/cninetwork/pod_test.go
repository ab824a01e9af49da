package cninetwork

import (
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
