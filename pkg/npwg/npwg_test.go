package npwg

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/containernetworking/cni/pkg/utils"
)

// NetworkSelection and the port and bandwidth types are the core's.
type (
	NetworkSelection = cninetwork.NetworkSelection
	PortMapping      = cninetwork.PortMapping
	Bandwidth        = cninetwork.Bandwidth
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     []NetworkSelection
		wantErr  string // substring of the error; "" means success
	}{
		{name: "empty", in: "", want: nil},
		{name: "spaces", in: "  \t", want: nil},
		{name: "short name", in: "net-a", want: []NetworkSelection{{Name: "net-a"}}},
		{name: "short all parts", in: " net-a , ns/net-b@if1,net-c@net3 ", want: []NetworkSelection{
			{Name: "net-a"}, {Name: "net-b", Namespace: "ns", Interface: "if1"}, {Name: "net-c", Interface: "net3"},
		}},
		{name: "empty JSON list", in: "[]", want: []NetworkSelection{}},
		{name: "JSON full", in: `[{"name":"a","namespace":"ns","interface":"net1","ips":["10.1.0.5/24","fd00::5"],
			"mac":"02:00:00:00:00:01","default-route":["10.1.0.1"],
			"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"UDP","hostIP":"127.0.0.1"},{"hostPort":1,"containerPort":2}],
			"bandwidth":{"ingressRate":1000,"ingressBurst":2000,"egressRate":3000,"egressBurst":4000},
			"cni-args":{ "foo" : "bar", "n": 1 }}]`, want: []NetworkSelection{{
			Name: "a", Namespace: "ns", Interface: "net1", IPs: []string{"10.1.0.5/24", "fd00::5"},
			MAC: "02:00:00:00:00:01", DefaultRoute: []string{"10.1.0.1"},
			PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "udp", HostIP: "127.0.0.1"}, {HostPort: 1, ContainerPort: 2, Protocol: "tcp"}},
			Bandwidth:    &Bandwidth{IngressRate: 1000, IngressBurst: 2000, EgressRate: 3000, EgressBurst: 4000},
			CNIArgs:      json.RawMessage(`{"foo":"bar","n":1}`),
		}}},
		{name: "empty element", in: "a,,b", wantErr: "element 1"},
		{name: "trailing comma", in: "a,", wantErr: "empty element"},
		{name: "two slashes", in: "a/b/c", wantErr: `more than one "/"`},
		{name: "two ats", in: "a@b@c", wantErr: `more than one "@"`},
		{name: "empty namespace", in: "/a", wantErr: "empty namespace"},
		{name: "empty interface", in: "a@", wantErr: "empty interface"},
		{name: "namespace after at", in: "a@b/c", wantErr: "must come last"},
		{name: "no name", in: "ns/@if1", wantErr: "no network name"},
		{name: "bad name", in: "net a", wantErr: "network name"},
		{name: "bad namespace", in: "NS/a", wantErr: "namespace"},
		{name: "long interface", in: "a@interface-too-long0", wantErr: "interface"},
		{name: "JSON not a list", in: `{"name":"a"}`, wantErr: "network name"},
		{name: "JSON malformed", in: `[{"name":"a"`, wantErr: "JSON list"},
		{name: "JSON trailing data", in: `[{"name":"a"}] x`, wantErr: "data after the list"},
		{name: "JSON unknown field", in: `[{"name":"a","infiniband-guid":"x"}]`, wantErr: "infiniband-guid"},
		{name: "JSON no name", in: `[{"interface":"net1"}]`, wantErr: "no network name"},
		{name: "JSON bad ip", in: `[{"name":"a","ips":["10.0.0.300"]}]`, wantErr: "ips"},
		{name: "JSON bad mac", in: `[{"name":"a","mac":"00:11:22:33:44:55:66:77"}]`, wantErr: "mac"},
		{name: "JSON bad gateway", in: `[{"name":"a","default-route":["gw"]}]`, wantErr: "default-route"},
		{name: "JSON host port", in: `[{"name":"a","portMappings":[{"hostPort":0,"containerPort":80}]}]`, wantErr: "host port 0"},
		{name: "JSON container port", in: `[{"name":"a","portMappings":[{"hostPort":80,"containerPort":70000}]}]`, wantErr: "container port 70000"},
		{name: "JSON protocol", in: `[{"name":"a","portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}]`, wantErr: "protocol"},
		{name: "JSON host IP", in: `[{"name":"a","portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"x"}]}]`, wantErr: "host IP"},
		{name: "JSON negative bandwidth", in: `[{"name":"a","bandwidth":{"ingressRate":-1}}]`, wantErr: "bandwidth"},
		{name: "JSON cni-args list", in: `[{"name":"a","cni-args":[1]}]`, wantErr: "cni-args"},
		{name: "JSON cni-args null", in: `[{"name":"a","cni-args":null}]`, want: []NetworkSelection{{Name: "a"}}},
		{name: "JSON field in another case", in: `[{"NAME":"a"}]`, wantErr: `unknown field "NAME"`},
		{name: "JSON empty lists", in: `[{"name":"a","ips":[],"default-route":[],"portMappings":[]}]`, want: []NetworkSelection{{Name: "a"}}},
		{name: "JSON wrong type", in: `[{"name":1}]`, wantErr: "JSON list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// shortForm returns sels in the annotation's short form, or false if one of them has more than
// a name, namespace and interface or a part the short form cannot hold.
func shortForm(sels []NetworkSelection) (string, bool) {
	parts := make([]string, 0, len(sels))
	for _, s := range sels {
		if !reflect.DeepEqual(s, NetworkSelection{Name: s.Name, Namespace: s.Namespace, Interface: s.Interface}) ||
			strings.ContainsAny(s.Interface, ",@/") {
			return "", false
		}
		e := s.Name
		if s.Namespace != "" {
			e = s.Namespace + "/" + e
		}
		if s.Interface != "" {
			e += "@" + s.Interface
		}
		parts = append(parts, e)
	}
	return strings.Join(parts, ","), len(parts) > 0
}

// FuzzNetworkSelection parses arbitrary annotations. It must never panic; an accepted
// annotation must give elements with valid names and interfaces, parse again to the same
// elements from its JSON form, and, when the short form can hold it, from its short form too.
// The seeds in testdata/fuzz/FuzzNetworkSelection run as regression tests with plain go test.
func FuzzNetworkSelection(f *testing.F) {
	for _, s := range []string{"net-a", "ns/net-b@if1, net-c", `[{"name":"a","interface":"net1","ips":["10.0.0.1/24"]}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<14 {
			return
		}
		sels, err := Parse(in)
		if err != nil {
			return
		}
		for _, s := range sels {
			if utils.ValidateNetworkName(s.Name) != nil {
				t.Fatalf("accepted %q with invalid network name %q", in, s.Name)
			}
			if s.Interface != "" && utils.ValidateInterfaceName(s.Interface) != nil {
				t.Fatalf("accepted %q with invalid interface %q", in, s.Interface)
			}
		}
		b, err := json.Marshal(sels)
		if err != nil {
			t.Fatalf("marshal %+v: %v", sels, err)
		}
		again, err := Parse(string(b))
		if err != nil {
			t.Fatalf("JSON form %s of %q refused: %v", b, in, err)
		}
		if len(sels) > 0 && !reflect.DeepEqual(again, sels) {
			t.Fatalf("JSON form %s of %q parses to %+v, want %+v", b, in, again, sels)
		}
		if short, ok := shortForm(sels); ok {
			fromShort, err := Parse(short)
			if err != nil {
				t.Fatalf("short form %q of %q refused: %v", short, in, err)
			}
			if !reflect.DeepEqual(fromShort, sels) {
				t.Fatalf("short form %q of %q parses to %+v, want %+v", short, in, fromShort, sels)
			}
		}
	})
}
