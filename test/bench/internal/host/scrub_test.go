//go:build linux

package host

import (
	"slices"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
	}{
		{`-A POSTROUTING -s 10.199.0.23/32 -m comment --comment "name: \"cnibench\" id: \"4f2d\"" -j CNI-f2ce`,
			[]string{"-A", "POSTROUTING", "-s", "10.199.0.23/32", "-m", "comment", "--comment", `name: "cnibench" id: "4f2d"`, "-j", "CNI-f2ce"}},
		{`-A CNI-x ! -d 224.0.0.0/4 -j MASQUERADE`, []string{"-A", "CNI-x", "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"}},
		{`-A X --comment ""`, []string{"-A", "X", "--comment", ""}},
		{`-A X --comment "a\\b"`, []string{"-A", "X", "--comment", `a\b`}},
	} {
		got, err := splitRule(c.line)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitRule(%s) = %q, %v; want %q", c.line, got, err, c.want)
		}
	}
	if _, err := splitRule(`-A X --comment "open`); err == nil {
		t.Error("unterminated quote: no error")
	}
}
