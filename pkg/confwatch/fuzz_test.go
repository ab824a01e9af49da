package confwatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/version"
)

// fuzzPlugins are the plugin binaries FuzzLoadAndSelect's bin dir holds.
var fuzzPlugins = []string{"bridge", "host-local", "portmap", "bandwidth", "loopback", "tuning"}

// Bounds of FuzzLoadAndSelect: the input it looks at, and what one scan of it may allocate.
// A scan reads a file whole (up to maxConfigSize) and parses it a few times, so its
// allocation grows with the input; a blow-up far past that is a bug.
const (
	maxFuzzConfig    = 64 << 10
	maxFuzzScanAlloc = 64 << 20
)

// fuzzExec is an in-memory invoke.Exec for fuzzing: it finds the plugins present in the first
// bin dir and answers VERSION with every version, without running anything.
type fuzzExec struct{ version.PluginDecoder }

func (*fuzzExec) FindInPath(plugin string, paths []string) (string, error) {
	if len(paths) == 0 {
		return "", errors.New("no bin dirs")
	}
	p := filepath.Join(paths[0], plugin)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", errors.New("not found")
	}
	return p, nil
}

func (*fuzzExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	if envValue(env, "CNI_COMMAND") != "VERSION" {
		return nil, errors.New("fuzzExec runs only VERSION")
	}
	return []byte(`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`), nil
}

// FuzzLoadAndSelect puts an arbitrary file beside a valid network in a configuration
// directory, with an arbitrary plugin config in the subdirectory a list named "fuzz" would load,
// and scans it. The scan must not panic or allocate without bound, and its snapshot must hold:
// every file once, as a valid network or skipped with a reason; a default network (the valid one
// is always there), which is the first valid file, so the arbitrary file is the default only if
// it sorts first and is valid; networks with bare plugin types and sorted capabilities; and a
// rescan of the unchanged directory publishes nothing new. The seeds in
// testdata/fuzz/FuzzLoadAndSelect run as regression tests with plain go test.
func FuzzLoadAndSelect(f *testing.F) {
	bin := f.TempDir()
	for _, p := range fuzzPlugins {
		if err := os.WriteFile(filepath.Join(bin, p), nil, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	exts := []string{".conflist", ".conf", ".json"}
	const good = `{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge","ipam":{"type":"host-local"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`

	f.Fuzz(func(t *testing.T, data, sub []byte, ext uint8, first bool) {
		if len(data)+len(sub) > maxFuzzConfig {
			return
		}
		dir := t.TempDir()
		goodPath := filepath.Join(dir, "10-good.conflist")
		fuzzPath := filepath.Join(dir, "20-fuzz"+exts[int(ext)%len(exts)])
		if first {
			fuzzPath = filepath.Join(dir, "00-fuzz"+exts[int(ext)%len(exts)])
		}
		if err := os.WriteFile(goodPath, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fuzzPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "fuzz"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fuzz", "50-plugin.conf"), sub, 0o644); err != nil {
			t.Fatal(err)
		}
		w, err := New(dir, WithBinDirs(bin), WithExec(&fuzzExec{}))
		if err != nil {
			t.Fatal(err)
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		snap := w.Scan(t.Context())
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxFuzzScanAlloc {
			t.Fatalf("one scan of %d bytes allocated %d bytes", len(data)+len(sub), alloc)
		}

		if snap.Generation != 1 || snap.Default == nil || snap.Err != nil {
			t.Fatalf("snapshot: generation %d, default %v, err %v; want generation 1 with a default", snap.Generation, snap.Default, snap.Err)
		}
		seen := map[string]int{}
		names := map[string]bool{}
		for i, n := range snap.Networks {
			seen[n.File]++
			if i > 0 && snap.Networks[i-1].File >= n.File {
				t.Fatalf("networks not in file order: %s before %s", snap.Networks[i-1].File, n.File)
			}
			if names[n.Name] {
				t.Fatalf("two valid networks named %q", n.Name)
			}
			names[n.Name] = true
			if n.Config == nil || n.Config.Name != n.Name || n.Digest == "" ||
				len(n.PluginTypes) == 0 || len(n.PluginTypes) != len(n.Config.Plugins) {
				t.Fatalf("malformed network %+v", n)
			}
			for _, typ := range n.PluginTypes {
				if typ == "" || strings.ContainsAny(typ, `/\`) || !slices.Contains(fuzzPlugins, typ) {
					t.Fatalf("network %q runs plugin type %q", n.Name, typ)
				}
			}
			if !slices.IsSorted(n.Capabilities) {
				t.Fatalf("capabilities not sorted: %v", n.Capabilities)
			}
		}
		for _, s := range snap.Skipped {
			seen[s.File]++
			if s.Reason == nil || s.Reason.Error() == "" {
				t.Fatalf("%s skipped without a reason", s.File)
			}
		}
		if seen[goodPath] != 1 || seen[fuzzPath] != 1 || len(seen) != 2 {
			t.Fatalf("files seen %v, want each of %s and %s once", seen, goodPath, fuzzPath)
		}
		if snap.Default != snap.Networks[0] {
			t.Fatalf("default %s is not the first valid network %s", snap.Default.File, snap.Networks[0].File)
		}
		if !first && snap.Default.File != goodPath {
			t.Fatalf("default %s, want %s: it sorts first and is valid", snap.Default.File, goodPath)
		}

		if again := w.Scan(t.Context()); again != snap {
			t.Fatalf("a rescan of the unchanged directory published generation %d", again.Generation)
		}
	})
}
