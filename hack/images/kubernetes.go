package main

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The kubernetes set's images, as test/utils/image/manifest.go of Kubernetes v1.37.2 names
// them, and the CoreDNS that hack/versions.sh pins (COREDNS_VERSION): the -coredns binary must
// report that version.
const (
	agnhostImage         = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	glibcDNSTestingImage = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	busyboxImage         = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	corednsVersion       = "v1.15.0"
	corednsImage         = "registry.k8s.io/coredns/coredns:" + corednsVersion
)

var nginxImages = []string{"registry.k8s.io/e2e-test-images/nginx:1.27.0-2", "registry.k8s.io/e2e-test-images/nginx:1.28.0-2"}

// hostProgram is a program copied from the host into an image, at the image path dst: the real
// file behind the first of hostBinDirs that holds name.
type hostProgram struct{ dst, name string }

// hostBinDirs are where host programs are looked for: fixed, so that nothing in the caller's
// PATH (a /usr/local/bin/curl) bears on the output.
var hostBinDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// glibcPrograms are the glibc programs of agnhost and glibc-dns-testing, from Debian's curl,
// bind9-dnsutils, netcat-openbsd, libc-bin, bash and dash (hack/install-kubernetes-images.sh
// installs them, and stamps its output with their versions: keep its host_programs in step).
// /bin/sh is dash, not busybox ash: ash runs its own applets before PATH's, so `sh -c 'nc -u
// ...'` would get busybox's nc, which has no -u. OpenBSD nc replaces busybox's at /usr/bin/nc.
var glibcPrograms = []hostProgram{
	{"bin/sh", "dash"},
	{"bin/bash", "bash"},
	{"usr/bin/curl", "curl"},
	{"usr/bin/dig", "dig"},
	{"usr/bin/host", "host"},
	{"usr/bin/nslookup", "nslookup"},
	{"usr/bin/nc", "nc.openbsd"},
	{"usr/bin/getent", "getent"},
}

// glibcDNSTestingPrograms are glibc-dns-testing's on top of glibcPrograms: Debian's hostname,
// whose -f, -i and -d resolve the host name through glibc (busybox's does it through the static
// glibc it is built with, and has no -I or -A). Only libraries that glibcPrograms do not bring
// go in their layer.
var glibcDNSTestingPrograms = []hostProgram{
	{"bin/hostname", "hostname"},
}

// pathDirs are the image's PATH (defaultPath), in order, as layer paths.
var pathDirs = []string{"usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"}

// kubernetesImages is the kubernetes set: the images of the Kubernetes e2e [sig-network] specs.
func kubernetesImages(bb *busybox, agnhostPath, certsDir, corednsPath string) ([]image, error) {
	agnhost, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, err
	}
	crt, err := os.ReadFile(filepath.Join(certsDir, "localhost.crt"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(certsDir, "localhost.key"))
	if err != nil {
		return nil, err
	}
	coredns, err := os.ReadFile(corednsPath)
	if err != nil {
		return nil, err
	}
	version, err := exec.Command(corednsPath, "-version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -version: %w", corednsPath, err)
	}
	if want := "CoreDNS-" + strings.TrimPrefix(corednsVersion, "v"); !strings.HasPrefix(string(version), want+"\n") {
		return nil, fmt.Errorf("%s -version: %q, not %s", corednsPath, strings.TrimSpace(string(version)), want)
	}
	nginxBlob, err := nginxLayer()
	if err != nil {
		return nil, err
	}
	baseBlob := baseLayer(bb.bin, bb.applets, (*layer).hardlink).blob()

	glibc := newLayer()
	if err := addHostPrograms(glibc, nil, glibcPrograms, bb.applets); err != nil {
		return nil, err
	}
	glibc.file("etc/nsswitch.conf", 0o644, []byte(nsswitch))
	glibcBlob := glibc.blob()
	hostname := newLayer()
	if err := addHostPrograms(hostname, glibc, glibcDNSTestingPrograms, bb.applets); err != nil {
		return nil, err
	}

	// /coredns alone, as the coredns image's first layer; agnhost and glibc-dns-testing have
	// theirs at / too (the DNS specs run agnhost's as a DNS server).
	corednsBin := newLayer()
	corednsBin.file("coredns", 0o755, coredns)
	corednsBlob := corednsBin.blob()
	corednsEtc := newLayer()
	corednsEtc.file("etc/passwd", 0o644, []byte(passwd))
	corednsEtc.file("etc/group", 0o644, []byte(group))

	agnhostLayer := newLayer()
	agnhostLayer.file("agnhost", 0o755, agnhost)
	agnhostLayer.symlink("agnhost-2", "agnhost")
	agnhostLayer.file("localhost.crt", 0o644, crt)
	agnhostLayer.file("localhost.key", 0o644, key)
	agnhostLayer.dir("uploads", 0o755)
	predefinedGroup(agnhostLayer, "user-defined-in-image")

	env := []string{defaultPath}
	ports := func(ps ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, p := range ps {
			m[p] = struct{}{}
		}
		return m
	}
	return []image{
		{
			archive: "agnhost",
			names:   []string{agnhostImage},
			layers:  []*blob{baseBlob, glibcBlob, corednsBlob, agnhostLayer.blob()},
			config: imageConfig{Env: env, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
				ExposedPorts: ports("80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp")},
		},
		{
			// The Dockerfile has no CMD: debian:bookworm-slim's.
			archive: "glibc-dns-testing",
			names:   []string{glibcDNSTestingImage},
			layers:  []*blob{baseBlob, glibcBlob, hostname.blob(), corednsBlob},
			config:  imageConfig{Env: env, Cmd: []string{"bash"}},
		},
		{
			archive: "coredns",
			names:   []string{corednsImage},
			layers:  []*blob{corednsBlob, corednsEtc.blob()},
			config: imageConfig{Env: env, Entrypoint: []string{"/coredns"},
				ExposedPorts: ports("53/tcp", "53/udp", "9153/tcp")},
		},
		{archive: "busybox", names: []string{busyboxImage}, layers: []*blob{baseBlob}, config: busyboxConfig()},
		{archive: "nginx", names: nginxImages, layers: []*blob{baseBlob, nginxBlob}, config: nginxConfig()},
	}, nil
}

// addHostPrograms adds each program to l at its dst, the real file copied, with its ELF
// interpreter and the shared libraries ldd finds for it at their host paths (each symlink on the
// way to the real file kept as one), less what the layer below already has. A busybox applet
// of the program's name in a PATH dir before the program's is whited out, so that PATH finds
// the program.
func addHostPrograms(l, below *layer, progs []hostProgram, applets []string) error {
	add := func(name string) error {
		if below != nil && below.headers[strings.TrimPrefix(name, "/")] != nil {
			return nil
		}
		return addHostFile(l, name)
	}
	isApplet := map[string]bool{}
	for _, a := range applets {
		isApplet[a] = true
	}
	for _, p := range progs {
		src, err := findHostProgram(p.name)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		l.file(p.dst, 0o755, data)
		dir, base := path.Split(p.dst)
		if slices.Contains(pathDirs, strings.TrimSuffix(dir, "/")) {
			for _, d := range pathDirs {
				if d+"/" == dir {
					break
				}
				if isApplet[d+"/"+base] {
					l.whiteout(d + "/" + base)
				}
			}
		}
		libs, err := sharedLibraries(src)
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if err := add(lib); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
		}
	}
	return nil
}

// findHostProgram returns the real file behind the first of hostBinDirs that holds name.
func findHostProgram(name string) (string, error) {
	for _, d := range hostBinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return filepath.EvalSymlinks(p)
		}
	}
	return "", fmt.Errorf("no %s in %s", name, strings.Join(hostBinDirs, " "))
}

// sharedLibraries returns the ELF interpreter of the program and the paths of the shared
// libraries ldd finds for it (none for a static one).
func sharedLibraries(prog string) ([]string, error) {
	f, err := elf.Open(prog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var libs []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", prog, err)
			}
			libs = append(libs, strings.TrimRight(string(interp), "\x00"))
		}
	}
	if len(libs) == 0 {
		return nil, nil
	}
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	// Lines are "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
	// (0x...)" or, for the vDSO, "linux-vdso.so.1 (0x...)".
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[1] == "=>":
			if !strings.HasPrefix(fields[2], "/") {
				return nil, fmt.Errorf("ldd %s: %s", prog, strings.TrimSpace(line))
			}
			libs = append(libs, fields[2])
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			libs = append(libs, fields[0])
		}
	}
	return libs, nil
}

// addHostFile adds the host file name to l at the same path: a symlink as a symlink, then what
// it points to, up to the regular file. Only name's last element is looked at as a link, so that
// the path stays as the host names it (/lib/x86_64-linux-gnu/libc.so.6, though /lib is a
// symlink to usr/lib on Debian 12).
func addHostFile(l *layer, name string) error {
	for range 40 {
		fi, err := os.Lstat(name)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(name)
			if err != nil {
				return err
			}
			l.symlink(strings.TrimPrefix(name, "/"), target)
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			name = path.Clean(target)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			l.file(strings.TrimPrefix(name, "/"), int64(fi.Mode().Perm()), data)
			return nil
		default:
			return fmt.Errorf("%s: not a file or a symlink", name)
		}
	}
	return fmt.Errorf("%s: too many symlinks", name)
}

// nsswitch makes glibc look names up in /etc/hosts, then DNS, as Debian's does; without it,
// glibc asks DNS first.
const nsswitch = `passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
`
