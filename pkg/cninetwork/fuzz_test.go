package cninetwork

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
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
// negative, equal to the number of interfaces; missing addresses; either family). The IPs must
// be among the result's addresses, and, entry by entry, exactly those resultIPs's doc calls the
// pod's (see podsEntry), ordered the kubelet's way: the first IPv4, then the first IPv6, then
// the rest in the result's order. The seeds in testdata/fuzz/FuzzResultIPs run as regression
// tests with plain go test.
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

		// Every IP is one of the result's addresses, returned at most as often as it is listed.
		listed := map[string]int{}
		for _, ipc := range cur.IPs {
			if ipc != nil && ipc.Address.IP != nil {
				listed[ipc.Address.IP.String()]++
			}
		}
		for _, ip := range ips {
			if listed[ip.String()] == 0 {
				t.Fatalf("resultIPs = %v has %v, not among the result's addresses (or more often than listed)", ips, ip)
			}
			listed[ip.String()]--
		}

		// Which entries it takes, and in which order: in a copy of the result whose entries
		// each have an address of their own (of the same family), an IP names its entry.
		tagged, entryOf := tagEntries(cur)
		got, err := resultIPs(tagged)
		if err != nil {
			t.Fatalf("resultIPs of the tagged result: %v", err)
		}
		if len(got) != len(ips) {
			t.Fatalf("resultIPs = %v, but %v for the same result with distinct addresses", ips, got)
		}
		var order []int // entry indexes, as returned
		taken := map[int]bool{}
		for _, ip := range got {
			i, ok := entryOf[ip.String()]
			if !ok || taken[i] {
				t.Fatalf("resultIPs of the tagged result = %v: %v is no entry's, or returned twice", got, ip)
			}
			taken[i] = true
			order = append(order, i)
		}
		for i, ipc := range cur.IPs {
			if ipc == nil || ipc.Address.IP == nil {
				continue // nothing to take; a tag-less entry cannot show up in got
			}
			if want, why := podsEntry(cur, ipc); taken[i] != want {
				t.Fatalf("resultIPs took entry %d (%v, %s): %v, want %v", i, ipc.Address.IP, why, taken[i], want)
			}
		}
		checkKubeletOrder(t, order, func(i int) bool { return cur.IPs[i].Address.IP.To4() != nil })

	})
}

// podsEntry says whether, by resultIPs's doc, an IP entry of the result is the pod's, and why.
func podsEntry(res *types100.Result, ipc *types100.IPConfig) (bool, string) {
	switch i := ipc.Interface; {
	case i == nil:
		return true, "names no interface"
	case *i < 0 || *i >= len(res.Interfaces):
		return false, fmt.Sprintf("index %d outside the %d interfaces", *i, len(res.Interfaces))
	case res.Interfaces[*i] == nil:
		return false, fmt.Sprintf("interface %d is null", *i)
	case res.Interfaces[*i].Sandbox == "":
		return false, fmt.Sprintf("interface %d is outside the sandbox", *i)
	default:
		return true, fmt.Sprintf("interface %d is in the sandbox", *i)
	}
}

// tagEntries copies res, giving each IP entry with an address a distinct address of the same
// family, and returns the copy with the entry index of each such address.
func tagEntries(res *types100.Result) (*types100.Result, map[string]int) {
	tagged := *res
	tagged.IPs = make([]*types100.IPConfig, len(res.IPs))
	entryOf := map[string]int{}
	for i, ipc := range res.IPs {
		if ipc == nil || ipc.Address.IP == nil {
			tagged.IPs[i] = ipc
			continue
		}
		c := *ipc
		c.Address.IP = make(net.IP, net.IPv6len) // fd00::i
		c.Address.IP[0] = 0xfd
		binary.BigEndian.PutUint32(c.Address.IP[12:], uint32(i))
		if ipc.Address.IP.To4() != nil {
			c.Address.IP = c.Address.IP[12:] // the IPv4 address i
		}
		tagged.IPs[i] = &c
		entryOf[c.Address.IP.String()] = i
	}
	return &tagged, entryOf
}

// checkKubeletOrder checks that order (entry indexes, as returned) is the kubelet's: the first
// IPv4 entry, then the first IPv6 entry, then the others in the result's order.
func checkKubeletOrder(t *testing.T, order []int, isV4 func(int) bool) {
	t.Helper()
	rest := slices.Sorted(slices.Values(order))
	var want []int
	for _, v4 := range []bool{true, false} {
		if i := slices.IndexFunc(rest, func(e int) bool { return isV4(e) == v4 }); i >= 0 {
			want = append(want, rest[i])
			rest = slices.Delete(rest, i, i+1)
		}
	}
	want = append(want, rest...)
	if !slices.Equal(order, want) {
		t.Fatalf("resultIPs returned the entries in the order %v, want %v (the first IPv4, the first IPv6, the rest in order)", order, want)
	}
}
