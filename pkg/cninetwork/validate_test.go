package cninetwork

import (
	"errors"
	"strings"
	"testing"
)

func TestPodValidate(t *testing.T) {
	valid := func() *Pod {
		return &Pod{SandboxID: "abc123", Name: "web", Namespace: "default", UID: "u1", NetNS: "/does/not/matter"}
	}
	tests := []struct {
		name    string
		mutate  func(*Pod)
		wantErr string // empty: valid
	}{
		{name: "valid", mutate: func(*Pod) {}},
		{name: "netns is not checked", mutate: func(p *Pod) { p.NetNS = "" }},
		{name: "empty sandbox ID", mutate: func(p *Pod) { p.SandboxID = "" }, wantErr: "sandbox ID is empty"},
		{name: "semicolon in name", mutate: func(p *Pod) { p.Name = "a;b" }, wantErr: "name"},
		{name: "equals in namespace", mutate: func(p *Pod) { p.Namespace = "a=b" }, wantErr: "namespace"},
		{name: "newline in UID", mutate: func(p *Pod) { p.UID = "a\nb" }, wantErr: "UID"},
		{name: "bad bandwidth", mutate: func(p *Pod) {
			p.Annotations = map[string]string{"kubernetes.io/egress-bandwidth": "fast"}
		}, wantErr: "egress-bandwidth"},
		{name: "host port out of range", mutate: func(p *Pod) {
			p.PortMappings = []PortMapping{{ContainerPort: 80, HostPort: 70000}}
		}, wantErr: "70000"},
		// The library path checks a pod's networks as the annotation's parser does.
		{name: "default-route not an IP", mutate: func(p *Pod) {
			p.ExtraNetworks = []NetworkSelection{{Name: "net2", DefaultRoute: []string{"not-an-ip"}}}
		}, wantErr: `extra network "net2": default-route: "not-an-ip" is not an IP address`},
		{name: "extra network in another namespace", mutate: func(p *Pod) {
			p.ExtraNetworks = []NetworkSelection{{Name: "net2", Namespace: "team-b"}}
		}, wantErr: `namespace "team-b"`},
		{name: "bad port protocol", mutate: func(p *Pod) {
			p.ExtraNetworks = []NetworkSelection{{Name: "net2", PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "icmp"}}}}
		}, wantErr: `protocol "icmp"`},
		{name: "valid extra network", mutate: func(p *Pod) {
			p.ExtraNetworks = []NetworkSelection{{Name: "net2", Namespace: "default", DefaultRoute: []string{"10.0.0.1"},
				PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "UDP"}}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid()
			tt.mutate(p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPod) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v; want ErrInvalidPod mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidateLeavesPodAlone: checking a pod's networks normalizes a copy, never the caller's
// Pod.
func TestValidateLeavesPodAlone(t *testing.T) {
	pod := &Pod{SandboxID: "abc123", Name: "web", Namespace: "default",
		ExtraNetworks: []NetworkSelection{{Name: "net2", PortMappings: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "UDP"}}}}}
	if err := pod.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := pod.ExtraNetworks[0].PortMappings[0].Protocol; got != "UDP" {
		t.Fatalf("Validate changed the pod's protocol to %q", got)
	}
}
