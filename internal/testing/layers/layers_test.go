// Package layers enforces the project's import layers: the test fails when an arrow runs the
// wrong way. The layers, from the bottom:
//
//   - internal/lib: the helpers the library builds on; they import nothing of the project's
//     but each other.
//   - pkg/confwatch, then pkg/cninetwork (the core a runtime embeds; it speaks no runtime's
//     types), then the adapters beside it (pkg/adapter/..., pkg/npwg).
//   - internal/runtime: the CRI runtime built on pkg/ (cnishim serve), and cmd/.
//   - internal/testing and test/: test helpers and tests, which no other code imports.
package layers

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cnishim/cnishim"

// rule forbids packages under from to depend on packages under to: directly, when direct is
// set, else directly or not.
type rule struct {
	from, to []string
	direct   bool
	why      string
}

var rules = []rule{
	{from: []string{"internal/lib/"}, to: []string{"pkg/", "internal/runtime/", "internal/testing/", "cmd/", "test/"},
		why: "library helpers are the bottom layer"},
	{from: []string{"pkg/"}, to: []string{"internal/runtime/", "internal/testing/", "cmd/", "test/"},
		why: "the library builds on library helpers only, never on the runtime, commands or tests"},
	{from: []string{"pkg/confwatch"}, to: []string{"pkg/cninetwork", "pkg/adapter/", "pkg/npwg"},
		why: "the config watcher is below the core"},
	{from: []string{"pkg/cninetwork"}, to: []string{"pkg/adapter/", "pkg/npwg", "k8s.io/cri-api"},
		why: "the core speaks pods and networks, not any runtime's types: adapters sit beside it"},
	{from: []string{"internal/runtime/", "cmd/"}, to: []string{"internal/testing/", "test/"},
		why: "no code but tests imports test helpers"},
	{from: []string{"cmd/", "internal/runtime/"}, to: []string{"internal/lib/admission"}, direct: true,
		why: "admission is the core's; commands read it through cninetwork.Plugin.Admission"},
}

// under reports whether the import path p is one of the prefixes, each relative to the module
// unless it names another module's path (a dot in its first element).
func under(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		full := pre
		if first, _, _ := strings.Cut(pre, "/"); !strings.Contains(first, ".") {
			full = module + "/" + pre
		}
		if p == strings.TrimSuffix(full, "/") || strings.HasPrefix(p, strings.TrimSuffix(full, "/")+"/") {
			return true
		}
	}
	return false
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func TestLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		for _, r := range rules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, d := range deps {
				if under(d, r.to) {
					t.Errorf("%s imports %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list found %d packages of %s; the test runs in the wrong place", n, module)
	}
}

// TestRulesMatch: the rules' prefixes mean what they say, so a rule cannot silently match
// nothing.
func TestRulesMatch(t *testing.T) {
	for _, tc := range []struct {
		path     string
		prefixes []string
		want     bool
	}{
		{module + "/pkg/cninetwork", []string{"pkg/"}, true},
		{module + "/pkg/cninetwork", []string{"pkg/cninetwork"}, true},
		{module + "/pkg/cninetworkx", []string{"pkg/cninetwork"}, false},
		{module + "/internal/lib/admission", []string{"internal/lib/admission"}, true},
		{"k8s.io/cri-api/pkg/apis/runtime/v1", []string{"k8s.io/cri-api"}, true},
		{"k8s.io/cri-apix", []string{"k8s.io/cri-api"}, false},
		{module + "/cmd/cnishim", []string{"pkg/"}, false},
	} {
		if got := under(tc.path, tc.prefixes); got != tc.want {
			t.Errorf("under(%s, %v) = %v; want %v", tc.path, tc.prefixes, got, tc.want)
		}
	}
}
