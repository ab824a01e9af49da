//go:build linux

package framework

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Registry is a read-only image registry on loopback serving the test images (the OCI layout
// archives hack/images writes), so that a runtime's image pulls, which critest makes for every
// image it uses, are answered on the machine: the containerds of the tests send every
// registry host to it (hosts.toml), and nothing reaches a registry outside.
type Registry struct {
	// Addr is host:port on 127.0.0.1.
	Addr string

	// Both are filled before the registry serves, and only read after.
	manifests map[string]descriptor // "repo:tag" (repo without the host) -> manifest
	blobs     map[string][]byte     // digest -> content
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

var (
	registryOnce sync.Once
	registry     *Registry
	registryErr  error
)

// TestRegistry returns the process's registry, started on first use from the archives in dir,
// for the rest of the test binary.
func TestRegistry(t testing.TB, dir string) *Registry {
	t.Helper()
	registryOnce.Do(func() { registry, registryErr = startRegistry(dir) })
	if registryErr != nil {
		t.Fatalf("test registry: %v", registryErr)
	}
	return registry
}

func startRegistry(dir string) (*Registry, error) {
	r := &Registry{manifests: map[string]descriptor{}, blobs: map[string][]byte{}}
	tars, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil || len(tars) == 0 {
		return nil, fmt.Errorf("no image archives in %s (run hack/install-containerd.sh): %v", dir, err)
	}
	for _, tarPath := range tars {
		if err := r.load(tarPath); err != nil {
			return nil, fmt.Errorf("%s: %w", tarPath, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.Addr = ln.Addr().String()
	go func() { _ = http.Serve(ln, r) }()
	return r, nil
}

// load reads one OCI layout archive: its blobs, and its index's manifests by image name.
func (r *Registry) load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case name == "index.json":
			if err := json.NewDecoder(tr).Decode(&index); err != nil {
				return fmt.Errorf("index.json: %w", err)
			}
		case strings.HasPrefix(name, "blobs/") && h.Typeflag == tar.TypeReg:
			parts := strings.Split(name, "/")
			if len(parts) != 3 {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			r.blobs[parts[1]+":"+parts[2]] = b
		}
	}
	for _, m := range index.Manifests {
		for _, key := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
			if ref := m.Annotations[key]; strings.Contains(ref, ":") {
				r.manifests[repoTag(ref)] = m
			}
		}
	}
	return nil
}

// repoTag strips the registry host from an image reference: "registry.k8s.io/pause:3.10" is
// "pause:3.10", "docker.io/library/busybox:1.28" is "library/busybox:1.28".
func repoTag(ref string) string {
	if i := strings.Index(ref, "/"); i > 0 && strings.ContainsAny(ref[:i], ".:") {
		return ref[i+1:]
	}
	return ref
}

// ServeHTTP answers the distribution API's reads: /v2/, manifests by tag or digest, blobs.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if path == "" || path == req.URL.Path {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		return
	}
	var body []byte
	var mediaType, digest string
	if i := strings.LastIndex(path, "/manifests/"); i > 0 {
		repo, ref := path[:i], path[i+len("/manifests/"):]
		if strings.HasPrefix(ref, "sha256:") {
			digest = ref
		} else if m, ok := r.manifests[repo+":"+ref]; ok {
			digest, mediaType = m.Digest, m.MediaType
		}
		body = r.blobs[digest]
		if mediaType == "" && body != nil {
			var probe struct {
				MediaType string `json:"mediaType"`
			}
			_ = json.Unmarshal(body, &probe)
			mediaType = probe.MediaType
		}
	} else if i := strings.LastIndex(path, "/blobs/"); i > 0 {
		digest = path[i+len("/blobs/"):]
		body = r.blobs[digest]
		mediaType = "application/octet-stream"
	}
	if body == nil {
		http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not in the test registry"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// WriteHostsDir writes a containerd registry config dir (config_path) that sends every
// registry host to r, and nowhere else.
func (r *Registry) WriteHostsDir(dir string) error {
	d := filepath.Join(dir, "_default")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n", r.Addr)
	return os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o600)
}
