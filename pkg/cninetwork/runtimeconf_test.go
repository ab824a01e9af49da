package cninetwork

import (
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
)

func TestRuntimeConf(t *testing.T) {
	allCaps := []string{capPortMappings, capBandwidth, capIPRanges, capDNS, capPodAnnotations, capCgroupPath}
	_, v4, _ := net.ParseCIDR("10.88.0.0/16")
	_, v4b, _ := net.ParseCIDR("10.89.0.0/16")
	_, v6, _ := net.ParseCIDR("fd00:88::/64")
	base := func() *Pod {
		return &Pod{SandboxID: "sb1", Name: "web", Namespace: "prod", UID: "u-1", NetNS: "/var/run/netns/x"}
	}
	mod := func(f func(*Pod)) *Pod { p := base(); f(p); return p }

	tests := []struct {
		name     string
		pod      *Pod
		cidrs    []*net.IPNet
		declared []string
		ifName   string
		wantArgs string
		wantCaps string // JSON of CapabilityArgs; "" for none
		wantErr  string // substring; the error must also wrap ErrInvalidPod
	}{
		{
			name: "plain pod, no caps declared", pod: base(), declared: nil, ifName: "eth0",
			wantArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1",
		},
		{
			name: "caps declared but pod has no values", pod: base(), declared: allCaps, ifName: "eth0",
		},
		{
			name: "every capability",
			pod: mod(func(p *Pod) {
				p.PortMappings = []PortMapping{
					{Protocol: "TCP", ContainerPort: 80, HostPort: 8080},
					{Protocol: "udp", ContainerPort: 53, HostPort: 5353, HostIP: "127.0.0.1"},
					{Protocol: "sctp", ContainerPort: 9, HostPort: 0}, // not published
					{Protocol: "sctp", ContainerPort: 7, HostPort: 7007},
				}
				p.Annotations = map[string]string{annotationIngressBandwidth: "10M", annotationEgressBandwidth: "1Gi", "a": "b"}
				p.DNS = &DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc.cluster.local"}, Options: []string{"ndots:5"}}
				p.CgroupParent = "/kubepods/pod-u-1"
			}),
			cidrs:    []*net.IPNet{v6, v4, v4b},
			declared: allCaps, ifName: "eth1",
			wantCaps: `{
				"portMappings":[
					{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
					{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
					{"hostPort":7007,"containerPort":7,"protocol":"sctp"}],
				"bandwidth":{"ingressRate":10000000,"ingressBurst":2147483647,"egressRate":1073741824,"egressBurst":2147483647},
				"ipRanges":[[{"subnet":"10.88.0.0/16"},{"subnet":"10.89.0.0/16"}],[{"subnet":"fd00:88::/64"}]],
				"dns":{"servers":["10.96.0.10"],"searches":["prod.svc.cluster.local"],"options":["ndots:5"]},
				"io.kubernetes.cri.pod-annotations":{"a":"b","kubernetes.io/egress-bandwidth":"1Gi","kubernetes.io/ingress-bandwidth":"10M"},
				"cgroupPath":"/kubepods/pod-u-1"}`,
		},
		{
			name: "only declared capabilities passed",
			pod: mod(func(p *Pod) {
				p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 8080}}
				p.Annotations = map[string]string{annotationEgressBandwidth: "1M"}
				p.CgroupParent = "/kubepods"
			}),
			cidrs: []*net.IPNet{v4}, declared: []string{capBandwidth, "somethingElse"}, ifName: "eth0",
			wantCaps: `{"bandwidth":{"egressRate":1000000,"egressBurst":2147483647}}`,
		},
		{name: "empty sandbox ID", pod: mod(func(p *Pod) { p.SandboxID = "" }), wantErr: "sandbox ID is empty"},
		{name: "sandbox ID with slash", pod: mod(func(p *Pod) { p.SandboxID = "../etc" }), wantErr: `sandbox ID "../etc"`},
		{name: "semicolon in name", pod: mod(func(p *Pod) { p.Name = "a;b" }), wantErr: `name "a;b" contains ';'`},
		{name: "equals in namespace", pod: mod(func(p *Pod) { p.Namespace = "a=b" }), wantErr: `namespace "a=b" contains '='`},
		{name: "NUL in UID", pod: mod(func(p *Pod) { p.UID = "a\x00" }), wantErr: `UID "a\x00" contains '\x00'`},
		{name: "newline in name", pod: mod(func(p *Pod) { p.Name = "a\nb" }), wantErr: `contains '\n'`},
		{name: "bad bandwidth", pod: mod(func(p *Pod) { p.Annotations = map[string]string{annotationIngressBandwidth: "10Mbps"} }), wantErr: `annotation kubernetes.io/ingress-bandwidth="10Mbps"`},
		{name: "tiny bandwidth", pod: mod(func(p *Pod) { p.Annotations = map[string]string{annotationEgressBandwidth: "10"} }), wantErr: "below the minimum"},
		{name: "huge bandwidth", pod: mod(func(p *Pod) { p.Annotations = map[string]string{annotationEgressBandwidth: "2P"} }), wantErr: "above the maximum"},
		{name: "container port 0", pod: mod(func(p *Pod) { p.PortMappings = []PortMapping{{ContainerPort: 0, HostPort: 80}} }), wantErr: "port mapping 0: container port 0 out of range"},
		{name: "container port too big", pod: mod(func(p *Pod) { p.PortMappings = []PortMapping{{ContainerPort: 65536, HostPort: 80}} }), wantErr: "container port 65536 out of range"},
		{name: "host port too big", pod: mod(func(p *Pod) { p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 70000}} }), wantErr: "host port 70000 out of range"},
		{name: "negative host port", pod: mod(func(p *Pod) { p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: -1}} }), wantErr: "host port -1 out of range"},
		{name: "unknown protocol", pod: mod(func(p *Pod) {
			p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 80, Protocol: "icmp"}}
		}), wantErr: `protocol "icmp" is not tcp, udp or sctp`},
		{name: "bad host IP", pod: mod(func(p *Pod) {
			p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 80, HostIP: "localhost"}}
		}), wantErr: `host IP "localhost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pa, err := preparePod(tt.pod, tt.cidrs)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("preparePod succeeded; want error containing %q", tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q; want ErrInvalidPod and %q", err, tt.wantErr)
				}
				if tt.pod.SandboxID != "" && !strings.Contains(err.Error(), "(sandbox "+tt.pod.SandboxID+")") {
					t.Fatalf("error %q does not name the pod", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rt := runtimeConf(tt.pod.SandboxID, pa, tt.declared, tt.ifName, tt.pod.NetNS)
			if rt.ContainerID != tt.pod.SandboxID || rt.NetNS != tt.pod.NetNS || rt.IfName != tt.ifName {
				t.Fatalf("RuntimeConf = %+v", rt)
			}
			want := "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1"
			if tt.wantArgs != "" {
				want = tt.wantArgs
			}
			if got := cniargs.String(rt.Args); got != want {
				t.Fatalf("CNI_ARGS = %q\nwant %q", got, want)
			}
			if tt.wantCaps == "" {
				if rt.CapabilityArgs != nil {
					t.Fatalf("CapabilityArgs = %v; want none", rt.CapabilityArgs)
				}
				return
			}
			assertJSONEqual(t, "CapabilityArgs", rt.CapabilityArgs, tt.wantCaps)
		})
	}
}

// assertJSONEqual fails unless got marshals to the same JSON value as want.
func assertJSONEqual(t *testing.T, what string, got any, want string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	assertJSONBytesEqual(t, what, b, want)
}

func assertJSONBytesEqual(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s =\n%s\nwant\n%s", what, got, want)
	}
}

func TestParsePodCIDRs(t *testing.T) {
	got, err := parsePodCIDRs([]string{"10.88.0.0/16, fd00::/64", "", "10.89.0.1/24"})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, n := range got {
		s = append(s, n.String())
	}
	if want := []string{"10.88.0.0/16", "fd00::/64", "10.89.0.0/24"}; !reflect.DeepEqual(s, want) {
		t.Fatalf("parsePodCIDRs = %v; want %v", s, want)
	}
	if _, err := parsePodCIDRs([]string{"10.88.0.0/33"}); err == nil {
		t.Fatal("parsePodCIDRs accepted 10.88.0.0/33")
	}
}
