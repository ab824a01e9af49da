package cninetwork

import (
	"net"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// resultVersions are the result versions a plugin may answer with; FuzzResultIPs picks one by
// index, as libcni decodes a plugin's stdout at the cniVersion of its config.
var resultVersions = []string{"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// maxFuzzResult caps the fuzzed result's size: a plugin's stdout of any size is read whole by
// libcni, so bounding our own allocation means bounding it per byte of input.
const maxFuzzResult = 64 << 10

// FuzzResultIPs decodes arbitrary plugin output at every result version, as libcni does for an
// ADD, and takes the pod's IPs from it. It must never panic (interface indexes out of range,
// negative, equal to the number of interfaces; missing addresses; either family), and the IPs
// must be exactly the result's addresses on sandbox interfaces or on no interface, ordered the
// kubelet's way: the first IPv4, then the first IPv6, then the rest in order. The seeds in
// testdata/fuzz/FuzzResultIPs run as regression tests with plain go test.
func FuzzResultIPs(f *testing.F) {
	f.Fuzz(func(t *testing.T, v uint8, stdout []byte) {
		if len(stdout) > maxFuzzResult {
			return
		}
		res, err := version.NewResult(resultVersions[int(v)%len(resultVersions)], stdout)
		if err != nil {
			return // libcni refuses the output before we see it
		}
		ips, err := resultIPs(res)
		cur, cerr := types100.NewResultFromResult(res)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("resultIPs error %v, conversion error %v", err, cerr)
		}
		if err != nil {
			return
		}

		// The IPs are the result's addresses that belong to the pod, in the result's order
		// but for the two moved to the front.
		var want []net.IP
		for _, ipc := range cur.IPs {
			if ipc == nil || ipc.Address.IP == nil {
				continue
			}
			if i := ipc.Interface; i != nil && (*i < 0 || *i >= len(cur.Interfaces) || cur.Interfaces[*i] == nil || cur.Interfaces[*i].Sandbox == "") {
				continue
			}
			want = append(want, ipc.Address.IP)
		}
		if len(ips) != len(want) {
			t.Fatalf("resultIPs = %v, want a permutation of %v", ips, want)
		}
		used := make([]bool, len(want))
		for _, ip := range ips {
			found := false
			for j, w := range want {
				if !used[j] && ip.Equal(w) {
					used[j], found = true, true
					break
				}
			}
			if !found {
				t.Fatalf("resultIPs = %v has %v, not among %v", ips, ip, want)
			}
		}
		firstOf := func(v4 bool) net.IP {
			for _, w := range want {
				if (w.To4() != nil) == v4 {
					return w
				}
			}
			return nil
		}
		v4, v6 := firstOf(true), firstOf(false)
		switch {
		case v4 != nil && !ips[0].Equal(v4):
			t.Fatalf("resultIPs = %v, want the first IPv4 %v first", ips, v4)
		case v4 != nil && v6 != nil && !ips[1].Equal(v6):
			t.Fatalf("resultIPs = %v, want the first IPv6 %v second", ips, v6)
		case v4 == nil && v6 != nil && !ips[0].Equal(v6):
			t.Fatalf("resultIPs = %v, want the first IPv6 %v first", ips, v6)
		}

		// The CRI form never panics and carries every IP.
		st := (&PodNetworkStatus{IPs: ips}).CRI()
		if len(ips) == 0 {
			if st != nil {
				t.Fatalf("CRI() = %v for no IPs", st)
			}
			return
		}
		if st == nil || net.ParseIP(st.Ip) == nil || len(st.AdditionalIps) != len(ips)-1 {
			t.Fatalf("CRI() = %v for %v", st, ips)
		}
	})
}
