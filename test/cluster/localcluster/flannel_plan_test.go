//go:build linux

package localcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestReadSubnetFile(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       string // fmt.Sprint of the subnets; "" for an error
	}{
		{"ipv4", "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.37.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "[10.244.37.0/24]"},
		{"dual, IPv4 first", "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\nFLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\n", "[10.244.5.0/24 fd00:10:244:5::/64]"},
		{"no subnet", "FLANNEL_NETWORK=10.244.0.0/16\n", "[]"},
		{"bad subnet", "FLANNEL_SUBNET=10.244.5.1\n", ""},
	} {
		path := filepath.Join(t.TempDir(), "subnet.env")
		if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadSubnetFile(path)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s: ReadSubnetFile = %v; want an error", tc.name, got)
		case tc.want != "" && (err != nil || fmt.Sprint(got) != tc.want):
			t.Errorf("%s: ReadSubnetFile = %v, %v; want %s", tc.name, got, err, tc.want)
		}
	}
}
