package confwatch

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// confExtensions are the file extensions of candidate configuration files, as the kubelet
// and libcni load them: .conflist holds a plugin list, .conf and .json a single plugin.
var confExtensions = [...]string{".conf", ".conflist", ".json"}

// pluginConfExtension is the extension of plugin configs in a network's subdirectory.
const pluginConfExtension = ".conf"

// isConfFile reports whether name has a candidate configuration extension.
func isConfFile(name string) bool {
	ext := filepath.Ext(name)
	for _, e := range confExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

// errIsDir marks a candidate path that turned out to be a directory (for example a symlink to
// one); such a path is not a configuration file and is ignored, as libcni ignores directories.
var errIsDir = errors.New("is a directory")

// readConfig reads the whole file at path, following symlinks, into memory. It refuses
// anything but a regular file, a file larger than maxConfigSize, and symlink loops, with errors
// that say so. The bytes returned are the only bytes the caller parses and digests.
func readConfig(path string) ([]byte, error) {
	f, err := openConfig(path)
	if err != nil {
		if isSymlinkLoop(err) {
			return nil, fmt.Errorf("symlink loop: %w", err)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, errIsDir
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	case fi.Size() > maxConfigSize:
		return nil, fmt.Errorf("file is %d bytes, larger than the %d-byte limit", fi.Size(), maxConfigSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("file is larger than the %d-byte limit", maxConfigSize)
	}
	return b, nil
}

// loaded is one configuration file read and parsed, not yet validated.
type loaded struct {
	list *libcni.NetworkConfigList
	// digest covers the file's bytes and those of every plugin config loaded from the
	// network's subdirectory, with their names.
	digest string
	// subdir is the plugin subdirectory consulted (whether or not it exists); empty when the
	// list sets loadOnlyInlinedPlugins or is a single-plugin file.
	subdir string
}

// digestParts returns the content digest of a network's parts: each part is a name and its
// bytes, both length-prefixed so no two different inputs collide by concatenation.
func digestParts(parts ...[2][]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		for _, b := range p {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// parseFile parses the bytes of the configuration file path with libcni v1.3's semantics, the
// way the kubelet loads a directory, except for the plugin subdirectory (see completeList):
//
//   - a .conflist file is a plugin list (libcni.NetworkConfFromBytes);
//   - a .conf or .json file is a single plugin (libcni.ConfFromBytes) converted to a list
//     (libcni.ConfListFromConf); a plugin list saved with one of these extensions has no
//     "type" and is rejected, as the kubelet rejects it.
//
// It depends only on the extension and the bytes, so its result is cached by them; the list
// returned must not be modified.
func parseFile(path string, data []byte) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		return libcni.NetworkConfFromBytes(data)
	}
	//lint:ignore SA1019 single-plugin files are still loaded, as the kubelet and CRI-O load them.
	conf, err := libcni.ConfFromBytes(data)
	if err != nil {
		var probe struct {
			Plugins json.RawMessage `json:"plugins"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Plugins != nil {
			return nil, fmt.Errorf("plugin list in a %s file (only .conflist files hold lists): %w", filepath.Ext(path), err)
		}
		return nil, err
	}
	//lint:ignore SA1019 the upconversion the kubelet and CRI-O use for single-plugin files.
	return libcni.ConfListFromConf(conf)
}

// completeList finishes loading a parsed file: unless a .conflist sets loadOnlyInlinedPlugins,
// the plugin configs in <dir>/<network name>/*.conf are appended in lexical order (what
// libcni.NetworkConfFromFile does), each read once so that the digest and the parse see the
// same bytes. hasEntry reports whether the conf dir listing has an entry of that name; without
// one the subdirectory is not looked for (it does not exist). A list without plugins is an
// error. On error, subdir is still set when the subdirectory was consulted, so the caller can
// watch it. base is not modified.
//
// Every error from parseFile and completeList means the file's content (or its
// subdirectory's) is unusable as read; see Scan for how a previously valid file that starts
// failing here is treated.
func completeList(dir, path string, data []byte, base *libcni.NetworkConfigList, hasEntry func(string) bool) (loaded, error) {
	parts := [][2][]byte{{nil, data}}
	list := base
	var subdir string
	if filepath.Ext(path) == ".conflist" && !base.LoadOnlyInlinedPlugins {
		if base.Name == "" || base.Name == "." || base.Name == ".." || strings.ContainsAny(base.Name, `/\`) {
			return loaded{}, fmt.Errorf("network name %q cannot name a plugin config subdirectory (set loadOnlyInlinedPlugins or rename it)", base.Name)
		}
		subdir = filepath.Join(dir, base.Name)
		if hasEntry(base.Name) {
			extra, err := readPluginDir(subdir)
			if err != nil {
				return loaded{subdir: subdir}, err
			}
			if len(extra) > 0 {
				cp := *base
				cp.Plugins = slices.Clip(base.Plugins)
				for _, p := range extra {
					cp.Plugins = append(cp.Plugins, p.conf)
					parts = append(parts, [2][]byte{[]byte(p.name), p.conf.Bytes})
				}
				list = &cp
			}
		}
	}
	if len(list.Plugins) == 0 {
		if subdir != "" {
			return loaded{subdir: subdir}, fmt.Errorf("no plugins: no \"plugins\" in the list and no %s files in %s", pluginConfExtension, subdir)
		}
		return loaded{}, errors.New("no plugins")
	}
	return loaded{list: list, digest: digestParts(parts...), subdir: subdir}, nil
}

type pluginFile struct {
	name string
	conf *libcni.PluginConfig
}

// readPluginDir reads and parses every *.conf file of a network's plugin subdirectory, in
// lexical order. A missing subdirectory holds no plugins, as in libcni.
func readPluginDir(subdir string) ([]pluginFile, error) {
	entries, err := os.ReadDir(subdir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("plugin config directory %s: %w", subdir, err)
	}
	var out []pluginFile
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != pluginConfExtension {
			continue
		}
		p := filepath.Join(subdir, e.Name())
		b, err := readConfig(p)
		if errors.Is(err, errIsDir) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("plugin config %s: %w", p, err)
		}
		conf, err := libcni.NetworkPluginConfFromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("plugin config %s: %w", p, err)
		}
		out = append(out, pluginFile{name: e.Name(), conf: conf})
	}
	return out, nil
}
