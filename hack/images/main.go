// Command images builds, with no registry, the container images that containerd runs in the
// project's tests, under the names the tests pull. Each archive it writes is an OCI image layout
// tar that `ctr -n k8s.io images import` takes, its index naming each image in full
// (io.containerd.image.name) and by tag (org.opencontainers.image.ref.name); the file list names
// every image, one a line. It builds one of two sets (-set), each into an out dir of its own:
//
//   - containerd (the default): critest v1.37.0's images (pkg/validate, pkg/framework),
//     containerd v2.4.2's default sandbox image and those of its integration tests.
//   - kubernetes: those of the Kubernetes v1.37.2 e2e [sig-network] specs (the sandbox image
//     comes from the containerd set).
//
// The images are made of a static busybox (Debian's busybox-static: hack/install-containerd.sh
// fetches it), two small static Go programs this command builds from the sources it embeds:
// pause/ (the pause image's /pause) and nginx/ (the web server images' nginx), and, in the
// kubernetes set, the agnhost and coredns binaries given and glibc programs copied from the host.
// Every layer is a gzip'd tar on top of a busybox base layer, except the pause and coredns
// images', which hold their binary alone as the real ones do. The containerd set:
//
//   - busybox: /bin/busybox, a hard link per applet (busybox --list-full), /etc/passwd and
//     /etc/group with root and nobody, /tmp, and pgrep and ipcs scripts that stand in for the
//     applets Debian's build leaves out (critest runs `pgrep sleep` and `ipcs -m`); Cmd sh.
//   - nginx: /usr/sbin/nginx serving /usr/share/nginx/html (a "Welcome to nginx!" page) on
//     port 80, or 12003 in the host network web server image, as critest's specs expect.
//   - httpd: busybox httpd serving /usr/local/apache2/htdocs on port 80, logging "httpd".
//   - test-image-predefined-group: default-user (uid 1000) in group-defined-in-image (gid
//     50000), User 1000, as cri-tools' images/image-predefined-group.
//   - alpine: a busybox with symlinked applets and /etc/os-release, for the containerd tests
//     that mount its /etc.
//
// The kubernetes set (kubernetes.go):
//
//   - e2e-test-images/busybox and nginx: the busybox and nginx images above.
//   - agnhost: busybox, a layer of glibc programs from the host (curl, dig, host, nslookup,
//     OpenBSD nc, getent, bash, and dash as /bin/sh), each with its ELF interpreter and the
//     shared libraries ldd finds for it, at their host paths, and /etc/nsswitch.conf; /coredns;
//     and /agnhost (and /agnhost-2, a symlink to it), porter's localhost.crt and localhost.key,
//     /uploads, and user-defined-in-image (uid 1000) in group-defined-in-image (gid 50000), as
//     test/images/agnhost/Dockerfile makes it; Entrypoint /agnhost, Cmd pause.
//   - glibc-dns-testing: busybox, the same glibc layer, the host's hostname and /coredns, as
//     test/images/glibc-dns-testing/Dockerfile makes it on Debian; Cmd bash.
//   - coredns: /coredns, and /etc/passwd and /etc/group with root and nobody.
//
// Every time in the output is fixed and every tar's entries sorted, so a rebuild from the same
// inputs writes the same bytes: the containerd set depends on nothing but the busybox binary and
// the Go toolchain; the kubernetes set also on the binaries and certificates given and the host
// files it copies.
//
// Usage, from the module root:
//
//	go run ./hack/images [-set containerd] -busybox PATH -out DIR
//	go run ./hack/images -set kubernetes -busybox PATH -agnhost PATH -agnhost-certs DIR \
//	    -coredns PATH -out DIR
//
// where -agnhost-certs names the dir holding localhost.crt and localhost.key, agnhost's porter/
// in the k8s.io/kubernetes module (test/images/agnhost/porter).
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

//go:embed pause/main.go nginx/main.go
var programs embed.FS

// epoch is every time the archives hold.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

func main() {
	set := flag.String("set", "containerd", "the image set to build: containerd or kubernetes")
	busybox := flag.String("busybox", "", "path to a static busybox binary")
	out := flag.String("out", "", "directory to write the archives and the list into")
	agnhost := flag.String("agnhost", "", "kubernetes set: path to a static agnhost binary")
	agnhostCerts := flag.String("agnhost-certs", "", "kubernetes set: directory holding agnhost's localhost.crt and localhost.key")
	coredns := flag.String("coredns", "", "kubernetes set: path to a static coredns binary")
	flag.Parse()
	k8s := *agnhost != "" && *agnhostCerts != "" && *coredns != ""
	none := *agnhost == "" && *agnhostCerts == "" && *coredns == ""
	if *busybox == "" || *out == "" || flag.NArg() != 0 ||
		!(*set == "containerd" && none || *set == "kubernetes" && k8s) {
		fmt.Fprintln(os.Stderr, "usage: images [-set containerd] -busybox PATH -out DIR\n"+
			"       images -set kubernetes -busybox PATH -agnhost PATH -agnhost-certs DIR -coredns PATH -out DIR")
		os.Exit(2)
	}
	bb, err := readBusybox(*busybox)
	var images []image
	if err == nil {
		if *set == "kubernetes" {
			images, err = kubernetesImages(bb, *agnhost, *agnhostCerts, *coredns)
		} else {
			images, err = containerdImages(bb)
		}
	}
	if err == nil {
		err = writeImages(*out, images)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "images: %v\n", err)
		os.Exit(1)
	}
}

// image is one image config and the names it is imported under.
type image struct {
	archive string
	names   []string
	layers  []*blob
	config  imageConfig
}

type imageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// busybox is the static busybox binary and its applets' paths (busybox --list-full).
type busybox struct {
	bin     []byte
	applets []string
}

func readBusybox(name string) (*busybox, error) {
	bin, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	list, err := exec.Command(name, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", name, err)
	}
	return &busybox{bin: bin, applets: strings.Fields(string(list))}, nil
}

// containerdImages is the containerd set: critest's and containerd's images.
func containerdImages(bb *busybox) ([]image, error) {
	pause, err := buildProgram("pause")
	if err != nil {
		return nil, err
	}
	nginxBlob, err := nginxLayer()
	if err != nil {
		return nil, err
	}

	// The busybox image links its applets to /bin/busybox with hard links, as the official one
	// does: masking one (critest masks /bin/ls) must not mask the shell. Alpine's are symlinks
	// (containerd's image volume test counts on /bin/sh being one).
	baseBlob := baseLayer(bb.bin, bb.applets, (*layer).hardlink).blob()
	alpineBase := baseLayer(bb.bin, bb.applets, (*layer).symlink)

	pauseBlob := func() *blob {
		l := newLayer()
		l.file("pause", 0o755, pause)
		return l.blob()
	}()
	// Each pause version is an image of its own, as in the registry: critest removes
	// pause:3.9 by its image ID, which would take the sandbox image with it if they were one.
	pauseConfig := func(version string) imageConfig {
		return imageConfig{User: "65535:65535", Env: []string{defaultPath}, Entrypoint: []string{"/pause"},
			WorkingDir: "/", Labels: map[string]string{"org.opencontainers.image.version": version}}
	}

	httpdLayer := newLayer()
	httpdLayer.file("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
	httpdLayer.file("usr/local/bin/httpd-foreground", 0o755, []byte(httpdForeground))

	groupLayer := newLayer()
	predefinedGroup(groupLayer, "default-user")

	alpineBase.file("etc/os-release", 0o644, []byte(osRelease))

	env := []string{defaultPath}
	return []image{
		// containerd's default sandbox image, and the pause names critest pulls.
		{archive: "pause", names: []string{"registry.k8s.io/pause:3.10.2"}, layers: []*blob{pauseBlob}, config: pauseConfig("3.10.2")},
		{archive: "pause-3.10", names: []string{"registry.k8s.io/pause:3.10"}, layers: []*blob{pauseBlob}, config: pauseConfig("3.10")},
		{archive: "pause-3.9", names: []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
			layers: []*blob{pauseBlob}, config: pauseConfig("3.9")},
		{
			archive: "busybox",
			names: []string{"registry.k8s.io/e2e-test-images/busybox:1.29-2", "ghcr.io/containerd/busybox:1.36",
				"busybox:1.28", "busybox:1.36", "busybox:latest"},
			layers: []*blob{baseBlob},
			config: busyboxConfig(),
		},
		{
			archive: "alpine",
			names:   []string{"ghcr.io/containerd/alpine:3.14.0"},
			layers:  []*blob{alpineBase.blob()},
			config:  imageConfig{Env: env, Cmd: []string{"/bin/sh"}},
		},
		{
			archive: "test-image-predefined-group",
			names:   []string{"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"},
			layers:  []*blob{baseBlob, groupLayer.blob()},
			config:  imageConfig{User: "1000", Env: env, Cmd: []string{"sh"}},
		},
		{
			archive: "nginx",
			names:   []string{"registry.k8s.io/e2e-test-images/nginx:1.14-2", "ghcr.io/containerd/nginx:1.27.0"},
			layers:  []*blob{baseBlob, nginxBlob},
			config:  nginxConfig(),
		},
		{
			// critest's hostNetWebServerImage on amd64: nginx on port 12003 in the host network.
			archive: "hostnet-nginx",
			names:   []string{"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"},
			layers:  []*blob{baseBlob, nginxBlob},
			config: imageConfig{Env: append(env[:1:1], "NGINX_PORT=12003"), Cmd: []string{"nginx", "-g", "daemon off;"},
				StopSignal: "SIGQUIT", ExposedPorts: map[string]struct{}{"12003/tcp": {}}},
		},
		{
			archive: "httpd",
			names:   []string{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4"},
			layers:  []*blob{baseBlob, httpdLayer.blob()},
			config: imageConfig{Env: env, Cmd: []string{"httpd-foreground"}, WorkingDir: "/usr/local/apache2",
				ExposedPorts: map[string]struct{}{"80/tcp": {}}},
		},
	}, nil
}

// writeImages writes each image's archive into out, the list of their names, and removes the
// archives of an earlier build that this one no longer makes (they would be imported too).
func writeImages(out string, images []image) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var list []string
	keep := map[string]bool{"list": true}
	for _, img := range images {
		data, err := img.archiveTar()
		if err != nil {
			return fmt.Errorf("%s: %w", img.archive, err)
		}
		name := img.archive + ".tar"
		if err := writeFile(filepath.Join(out, name), data); err != nil {
			return err
		}
		keep[name] = true
		for _, n := range img.names {
			full, _ := normalize(n)
			list = append(list, full)
		}
		fmt.Fprintf(os.Stderr, "images: %s (%d bytes): %s\n", name, len(data), strings.Join(img.names, " "))
	}
	old, err := filepath.Glob(filepath.Join(out, "*.tar"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if !keep[filepath.Base(f)] {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	return writeFile(filepath.Join(out, "list"), []byte(strings.Join(list, "\n")+"\n"))
}

// busyboxConfig is the busybox image's config.
func busyboxConfig() imageConfig {
	return imageConfig{Env: []string{defaultPath}, Cmd: []string{"sh"}}
}

// nginxLayer is the nginx images' layer on the busybox base: nginx/ built, and its page.
func nginxLayer() (*blob, error) {
	nginx, err := buildProgram("nginx")
	if err != nil {
		return nil, err
	}
	l := newLayer()
	l.file("usr/sbin/nginx", 0o755, nginx)
	l.file("usr/share/nginx/html/index.html", 0o644, []byte(nginxIndex))
	return l.blob(), nil
}

// nginxConfig is the nginx image's config: nginx on port 80.
func nginxConfig() imageConfig {
	return imageConfig{Env: []string{defaultPath}, Cmd: []string{"nginx", "-g", "daemon off;"}, StopSignal: "SIGQUIT",
		ExposedPorts: map[string]struct{}{"80/tcp": {}}}
}

// predefinedGroup writes /etc/passwd and /etc/group with user (uid 1000, in a group of its own,
// gid 1000) also in group-defined-in-image (gid 50000), and user's home, as busybox's
// `adduser -u 1000 -D user; addgroup -g 50000 group-defined-in-image; addgroup user
// group-defined-in-image` make them.
func predefinedGroup(l *layer, user string) {
	l.file("etc/passwd", 0o644, []byte(passwd+user+":x:1000:1000:Linux User,,,:/home/"+user+":/bin/sh\n"))
	l.file("etc/group", 0o644, []byte(group+user+":x:1000:\ngroup-defined-in-image:x:50000:"+user+"\n"))
	l.owned("home/"+user, 0o755, 1000, 1000)
}

// baseLayer is the busybox base: /bin/busybox with each applet of busybox --list-full linked
// to it by link, the root dirs, /etc/passwd and /etc/group with root and nobody, and the
// pgrep and ipcs stand-ins.
func baseLayer(busybox []byte, applets []string, link func(l *layer, name, target string)) *layer {
	l := newLayer()
	l.file("bin/busybox", 0o755, busybox)
	for _, applet := range applets {
		// linuxrc is an init's name at the root, not an applet to run.
		if applet == "bin/busybox" || !strings.Contains(applet, "/") {
			continue
		}
		link(l, applet, "/bin/busybox")
	}
	for _, d := range []string{"dev", "home", "proc", "sys", "usr/local/bin", "var/run", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("root", 0o700)
	l.dir("tmp", 0o1777)
	l.file("etc/passwd", 0o644, []byte(passwd))
	l.file("etc/group", 0o644, []byte(group))
	l.file("usr/bin/pgrep", 0o755, []byte(pgrepScript))
	l.file("usr/bin/ipcs", 0o755, []byte(ipcsScript))
	return l
}

// buildProgram builds the embedded program in dir (pause or nginx) as a static linux/amd64
// binary, in a scratch module so that no go.mod or GOFLAGS of the caller's bears on it.
func buildProgram(dir string) ([]byte, error) {
	src, err := programs.ReadFile(dir + "/main.go")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "images-"+dir+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "main.go"), src, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module "+dir+"\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(tmp, dir)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -buildid=", "-o", bin, ".")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	return os.ReadFile(bin)
}

// blob is content addressed by its sha256.
type blob struct {
	media  string
	data   []byte
	digest string
	diffID string // a layer's: the digest of its uncompressed tar
}

func newBlob(media string, data []byte) *blob {
	return &blob{media: media, data: data, digest: sha256Digest(data)}
}

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

func (b *blob) descriptor() descriptor {
	return descriptor{MediaType: b.media, Digest: b.digest, Size: len(b.data)}
}

// archiveTar returns the image's OCI image layout as a tar.
func (img image) archiveTar() ([]byte, error) {
	diffIDs := make([]string, 0, len(img.layers))
	history := make([]map[string]any, 0, len(img.layers))
	layerDescs := make([]descriptor, 0, len(img.layers))
	for _, l := range img.layers {
		diffIDs = append(diffIDs, l.diffID)
		history = append(history, map[string]any{"created": epoch, "created_by": "hack/images"})
		layerDescs = append(layerDescs, l.descriptor())
	}
	cfg, err := json.Marshal(map[string]any{
		"created":      epoch,
		"architecture": "amd64",
		"os":           "linux",
		"config":       img.config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      history,
	})
	if err != nil {
		return nil, err
	}
	config := newBlob(mediaConfig, cfg)
	mf, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        config.descriptor(),
		"layers":        layerDescs,
	})
	if err != nil {
		return nil, err
	}
	manifest := newBlob(mediaManifest, mf)

	var manifests []descriptor
	for _, n := range img.names {
		full, tag := normalize(n)
		d := manifest.descriptor()
		d.Annotations = map[string]string{annotationImageName: full, annotationRefName: tag}
		d.Platform = &platform{Architecture: "amd64", OS: "linux"}
		manifests = append(manifests, d)
	}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaIndex, "manifests": manifests})
	if err != nil {
		return nil, err
	}

	t := newLayer()
	t.file("oci-layout", 0o644, []byte(`{"imageLayoutVersion":"1.0.0"}`))
	t.file("index.json", 0o644, index)
	for _, b := range append([]*blob{config, manifest}, img.layers...) {
		t.file("blobs/sha256/"+strings.TrimPrefix(b.digest, "sha256:"), 0o644, b.data)
	}
	return t.tar()
}

// normalize returns a reference as containerd names it (docker.io/library/busybox:latest for
// busybox), and its tag.
func normalize(ref string) (full, tag string) {
	name := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	} else {
		tag = "latest"
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		name = "docker.io/" + name
	}
	if rest, ok := strings.CutPrefix(name, "docker.io/"); ok && !strings.Contains(rest, "/") {
		name = "docker.io/library/" + rest
	}
	return name + ":" + tag, tag
}

// layer is a file tree to write as a tar: headers and the regular files' data, by name.
// Parent directories are added as root's, mode 0755.
type layer struct {
	headers map[string]*tar.Header
	data    map[string][]byte
}

func newLayer() *layer {
	return &layer{headers: map[string]*tar.Header{}, data: map[string][]byte{}}
}

func (l *layer) add(h *tar.Header, data []byte) {
	h.ModTime = epoch
	l.headers[h.Name] = h
	l.data[h.Name] = data
	for d := path.Dir(strings.TrimSuffix(h.Name, "/")); d != "."; d = path.Dir(d) {
		if _, ok := l.headers[d+"/"]; !ok {
			l.headers[d+"/"] = &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch}
		}
	}
}

func (l *layer) file(name string, mode int64, data []byte) {
	l.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data)
}

func (l *layer) symlink(name, target string) {
	l.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

// hardlink links name to target, a path in the same layer.
func (l *layer) hardlink(name, target string) {
	l.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: strings.TrimPrefix(target, "/"), Mode: 0o755}, nil)
}

// whiteout hides name of a lower layer (an OCI whiteout file, .wh.<base> beside it).
func (l *layer) whiteout(name string) {
	l.file(path.Join(path.Dir(name), ".wh."+path.Base(name)), 0o644, nil)
}

func (l *layer) dir(name string, mode int64) { l.owned(name, mode, 0, 0) }

func (l *layer) owned(name string, mode int64, uid, gid int) {
	l.add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid}, nil)
}

// tar writes the tree in name order, hard links last so that their targets come first.
func (l *layer) tar() ([]byte, error) {
	names := make([]string, 0, len(l.headers))
	for n := range l.headers {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		li, lj := l.headers[names[i]].Typeflag == tar.TypeLink, l.headers[names[j]].Typeflag == tar.TypeLink
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		if err := tw.WriteHeader(l.headers[n]); err != nil {
			return nil, err
		}
		if _, err := tw.Write(l.data[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blob returns the layer as a gzip'd tar blob.
func (l *layer) blob() *blob {
	raw, err := l.tar()
	if err != nil {
		panic(err) // only writing to memory: a bug
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	b := newBlob(mediaLayer, gz.Bytes())
	b.diffID = sha256Digest(raw)
	return b
}

// writeFile replaces name whole, so that a reader never sees it half written.
func writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

const passwd = `root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
`

const group = `root:x:0:
nobody:x:65534:
`

// pgrepScript stands in for busybox's pgrep applet, which Debian's busybox-static leaves out:
// pgrep PATTERN prints the PIDs of the processes whose name matches PATTERN.
const pgrepScript = `#!/bin/sh
# pgrep PATTERN: the PIDs of the processes whose name matches PATTERN (a stand-in for the
# busybox applet, which Debian's busybox-static leaves out).
if [ $# -ne 1 ]; then echo "usage: pgrep PATTERN" >&2; exit 2; fi
found=1
for d in /proc/[0-9]*; do
  pid=${d#/proc/}
  [ "$pid" = "$$" ] && continue
  { read -r comm <"$d/comm"; } 2>/dev/null || continue
  if echo "$comm" | grep -q -e "$1"; then echo "$pid"; found=0; fi
done
exit $found
`

// ipcsScript stands in for busybox's ipcs applet, which Debian's busybox-static leaves out.
const ipcsScript = `#!/bin/sh
# ipcs [-m]: the System V shared memory segments, from /proc/sysvipc/shm (a stand-in for the
# busybox applet, which Debian's busybox-static leaves out).
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
`

// httpdForeground runs busybox httpd in the foreground under a shell that stays PID 1, so
// SIGTERM and SIGINT stop the container at once (a PID 1 with no handler ignores them).
const httpdForeground = `#!/bin/sh
echo "httpd-foreground: busybox httpd serving /usr/local/apache2/htdocs on :80" >&2
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
pid=$!
wait "$pid"
`

const nginxIndex = `<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>A stand-in for nginx built by hack/images.</p>
</body>
</html>
`

const osRelease = `NAME="BusyBox"
ID=busybox
PRETTY_NAME="BusyBox (a stand-in for ghcr.io/containerd/alpine, built by hack/images)"
`
