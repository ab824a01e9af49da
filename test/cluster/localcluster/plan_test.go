//go:build linux

package localcluster

import (
	"net/netip"
	"testing"
)

func TestNthSubnet(t *testing.T) {
	for _, tc := range []struct {
		p    string
		bits int
		i    int
		want string // "" for an error
	}{
		{"10.244.0.0/16", 24, 0, "10.244.0.0/24"},
		{"10.244.0.0/16", 24, 2, "10.244.2.0/24"},
		{"10.244.0.0/16", 24, 255, "10.244.255.0/24"},
		{"10.244.0.0/16", 24, 256, ""},
		{"172.31.250.0/24", 32, 10, "172.31.250.10/32"},
		{"fd00:10:244::/56", 64, 0, "fd00:10:244::/64"},
		{"fd00:10:244::/56", 64, 17, "fd00:10:244:11::/64"},
		{"fd00:10:244::/56", 64, 256, ""},
		{"fd00:172:31:250::/64", 128, 12, "fd00:172:31:250::c/128"},
		{"10.244.0.0/16", 8, 0, ""},
	} {
		got, err := nthSubnet(netip.MustParsePrefix(tc.p), tc.bits, tc.i)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("nthSubnet(%s, %d, %d) = %s; want an error", tc.p, tc.bits, tc.i, got)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("nthSubnet(%s, %d, %d) = %s, %v; want %s", tc.p, tc.bits, tc.i, got, err, tc.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:          "/tmp/a",
		`/tmp/a\040b`:     "/tmp/a b",
		`/tmp/a\134b\011`: "/tmp/a\\b\t",
		`/tmp/a\04`:       `/tmp/a\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{WorkDir: "/w", Cnishim: "c", CNIBinDir: "b"}, true},
		{"relative work dir", Config{WorkDir: "w", Cnishim: "c", CNIBinDir: "b"}, false},
		{"long prefix", Config{WorkDir: "/w", Cnishim: "c", CNIBinDir: "b", Prefix: "abcdefghijk"}, false},
		{"unknown network", Config{WorkDir: "/w", Cnishim: "c", CNIBinDir: "b", Network: "calico"}, false},
		{"flannel without its bin dir", Config{WorkDir: "/w", Cnishim: "c", CNIBinDir: "b", Network: "flannel"}, false},
		{"bad family", Config{WorkDir: "/w", Cnishim: "c", CNIBinDir: "b", IPFamily: "ipv6"}, false},
		{"no binary", Config{WorkDir: "/w"}, false},
	} {
		got, err := tc.cfg.withDefaults()
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v; want ok=%t", tc.name, err, tc.ok)
		}
		if tc.ok && (got.Nodes != 3 || got.IPFamily != IPv4 || got.Network != "kindnet" || got.Prefix != "lc" || got.PodCIDRv4 != "10.244.0.0/16") {
			t.Errorf("%s: defaults %+v", tc.name, got)
		}
	}
}
