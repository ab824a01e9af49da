package cri

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/npwg"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodFromSandboxConfig(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "prod", Uid: "u-1"},
		Annotations: map[string]string{"kubernetes.io/ingress-bandwidth": "1M"},
		PortMappings: []*runtimeapi.PortMapping{
			{ContainerPort: 80, HostPort: 8080},
			nil,
			{Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 9, HostPort: 9009, HostIp: "127.0.0.1"},
		},
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc"}, Options: []string{"ndots:5"}},
		Linux:     &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/u-1"},
	}
	got, err := PodFromSandboxConfig("sb1", "/var/run/netns/sb1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := &cninetwork.Pod{
		SandboxID: "sb1", NetNS: "/var/run/netns/sb1",
		Name: "web", Namespace: "prod", UID: "u-1",
		Annotations: cfg.Annotations,
		PortMappings: []cninetwork.PortMapping{
			{ContainerPort: 80, HostPort: 8080, Protocol: "tcp"},
			{ContainerPort: 9, HostPort: 9009, Protocol: "sctp", HostIP: "127.0.0.1"},
		},
		DNS:          &cninetwork.DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc"}, Options: []string{"ndots:5"}},
		CgroupParent: "/kubepods/u-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PodFromSandboxConfig = %+v\nwant %+v", got, want)
	}
	for _, tc := range []struct {
		name string
		cfg  *runtimeapi.PodSandboxConfig
		want *cninetwork.Pod
	}{
		{"nil config", nil, &cninetwork.Pod{SandboxID: "sb", NetNS: "/ns"}},
		{"empty config", &runtimeapi.PodSandboxConfig{}, &cninetwork.Pod{SandboxID: "sb", NetNS: "/ns"}},
	} {
		if got, err := PodFromSandboxConfig("sb", "/ns", tc.cfg); err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s: PodFromSandboxConfig = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// TestPodFromSandboxConfigNetworks: both forms of the annotation become the same extra
// networks; an annotation or a protocol that cannot be read is an error wrapping
// ErrInvalidPod, and the pod is still returned for a teardown.
func TestPodFromSandboxConfigNetworks(t *testing.T) {
	cfgOf := func(a string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "team"},
			Annotations: map[string]string{npwg.NetworksAnnotation: a},
		}
	}
	want := []cninetwork.NetworkSelection{{Name: "net-a"}, {Name: "net-b", Namespace: "team", Interface: "net1"}, {Name: "net-c", Namespace: "default", Interface: "x"}}
	for _, a := range []string{
		"net-a, team/net-b@net1, default/net-c@x",
		`[{"name":"net-a"},{"name":"net-b","namespace":"team","interface":"net1"},{"name":"net-c","namespace":"default","interface":"x"}]`,
	} {
		pod, err := PodFromSandboxConfig("s1", "/ns", cfgOf(a))
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if err := pod.Validate(); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if !reflect.DeepEqual(pod.ExtraNetworks, want) {
			t.Fatalf("%s: extra networks %+v; want %+v", a, pod.ExtraNetworks, want)
		}
	}
	if pod, err := PodFromSandboxConfig("s1", "/ns", cfgOf("")); err != nil || len(pod.ExtraNetworks) != 0 {
		t.Fatalf("empty annotation: %+v, %v", pod, err)
	}

	bad := []struct{ name, annotation, want string }{
		{"malformed", "net-b,,", "empty element"},
		{"bad JSON", `[{"name":"net-b"`, "JSON list"},
		{"bad IP", `[{"name":"net-b","ips":["10.0.0.300"]}]`, `ips: "10.0.0.300" is not an IP address`},
	}
	for _, tt := range bad {
		pod, err := PodFromSandboxConfig("s1", "/ns", cfgOf(tt.annotation))
		if !errors.Is(err, cninetwork.ErrInvalidPod) || !strings.Contains(err.Error(), tt.want) ||
			!strings.Contains(err.Error(), "annotation "+npwg.NetworksAnnotation) {
			t.Fatalf("%s: error %v; want ErrInvalidPod naming the annotation and saying %q", tt.name, err, tt.want)
		}
		if pod == nil || pod.Name != "web" || len(pod.ExtraNetworks) != 0 {
			t.Fatalf("%s: pod %+v; want the pod without extra networks", tt.name, pod)
		}
	}
	cfg := cfgOf("")
	cfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 80, Protocol: 7}}
	if _, err := PodFromSandboxConfig("s1", "/ns", cfg); !errors.Is(err, cninetwork.ErrInvalidPod) ||
		!strings.Contains(err.Error(), "port mapping 0: unknown protocol 7 (want TCP, UDP or SCTP)") {
		t.Fatalf("unknown protocol: %v", err)
	}
}

func TestNetworkStatus(t *testing.T) {
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, x := range s {
			out = append(out, net.ParseIP(x))
		}
		return out
	}
	tests := []struct {
		name string
		st   *cninetwork.PodNetworkStatus
		want *runtimeapi.PodSandboxNetworkStatus
	}{
		{"nil", nil, nil},
		{"no IPs", &cninetwork.PodNetworkStatus{}, nil},
		{"single", &cninetwork.PodNetworkStatus{IPs: ips("10.88.0.5")}, &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.5"}},
		{"dual-stack", &cninetwork.PodNetworkStatus{IPs: ips("10.88.0.5", "fd00::5")},
			&runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.5", AdditionalIps: []*runtimeapi.PodIP{{Ip: "fd00::5"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NetworkStatus(tt.st); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("NetworkStatus() = %v; want %v", got, tt.want)
			}
		})
	}
}
