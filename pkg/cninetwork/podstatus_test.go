package cninetwork

import (
	"net"
	"reflect"
	"testing"

	"github.com/containernetworking/cni/pkg/types/create"
)

func TestResultIPs(t *testing.T) {
	tests := []struct {
		name    string
		result  string
		want    []string
		wantErr bool
	}{
		{
			name:   "1.0.0 sandbox interface",
			result: `{"cniVersion":"1.0.0","interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/ns"}],"ips":[{"address":"10.88.0.5/16","interface":1}]}`,
			want:   []string{"10.88.0.5"},
		},
		{
			name:   "1.1.0 host-side interface left out",
			result: `{"cniVersion":"1.1.0","interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/ns"}],"ips":[{"address":"10.88.0.1/16","interface":0},{"address":"10.88.0.6/16","interface":1}]}`,
			want:   []string{"10.88.0.6"},
		},
		{
			name:   "0.4.0 dual-stack, IPv6 listed first",
			result: `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"version":"6","address":"fd00::5/64","interface":0},{"version":"4","address":"10.88.0.5/16","interface":0},{"version":"6","address":"fd00::6/64","interface":0}]}`,
			want:   []string{"10.88.0.5", "fd00::5", "fd00::6"},
		},
		{
			name:   "0.3.1 no interfaces, no index",
			result: `{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.88.0.7/16"}]}`,
			want:   []string{"10.88.0.7"},
		},
		{
			name:   "no interfaces but an index",
			result: `{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.8/16","interface":0}]}`,
			want:   nil,
		},
		{
			name:   "index equal to the number of interfaces",
			result: `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"address":"10.88.0.9/16","interface":1},{"address":"10.88.0.10/16","interface":0}]}`,
			want:   []string{"10.88.0.10"},
		},
		{
			name:   "negative index",
			result: `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"address":"10.88.0.11/16","interface":-1}]}`,
			want:   nil,
		},
		{
			name:   "IPv6 only",
			result: `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],"ips":[{"address":"fd00::1:5/64","interface":0},{"address":"fd00::1:6/64","interface":0}]}`,
			want:   []string{"fd00::1:5", "fd00::1:6"},
		},
		{
			name:   "no IPs",
			result: `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/ns"}]}`,
			want:   nil,
		},
		{
			name:   "0.2.0",
			result: `{"cniVersion":"0.2.0","ip4":{"ip":"10.88.0.12/16"},"ip6":{"ip":"fd00::12/64"}}`,
			want:   []string{"10.88.0.12", "fd00::12"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := create.CreateFromBytes([]byte(tt.result))
			if err != nil {
				t.Fatal(err)
			}
			ips, err := resultIPs(res)
			if tt.wantErr {
				if err == nil {
					t.Fatal("resultIPs succeeded; want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("resultIPs = %v; want %v", got, tt.want)
			}
		})
	}
	if ips, err := resultIPs(nil); ips != nil || err != nil {
		t.Fatalf("resultIPs(nil) = %v, %v", ips, err)
	}
}

func TestOrderIPs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{nil, nil},
		{[]string{"fd00::1"}, []string{"fd00::1"}},
		{[]string{"fd00::1", "fd00::2", "10.0.0.1", "10.0.0.2"}, []string{"10.0.0.1", "fd00::1", "fd00::2", "10.0.0.2"}},
		{[]string{"10.0.0.1", "10.0.0.2", "fd00::1"}, []string{"10.0.0.1", "fd00::1", "10.0.0.2"}},
		{[]string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.1", "10.0.0.2"}},
	}
	for _, tt := range tests {
		var ips []net.IP
		for _, s := range tt.in {
			ips = append(ips, net.ParseIP(s))
		}
		var got []string
		for _, ip := range orderIPs(ips) {
			got = append(got, ip.String())
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("orderIPs(%v) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
