package cninetwork

import (
	"fmt"
	"net"
	"testing"
)

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
