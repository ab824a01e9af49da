//go:build !linux

package confwatch

import (
	"fmt"
	"os"
)

// openConfig opens a configuration file for reading.
func openConfig(path string) (*os.File, error) { return os.Open(path) }

// isSymlinkLoop reports whether err is a symlink loop; not detected on this platform.
func isSymlinkLoop(error) bool { return false }

// fileIdentity describes a file well enough to notice it was replaced or rewritten: its size,
// modification time and mode (no inode on this platform). It follows symlinks.
func fileIdentity(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d:%d:%o", path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode()), nil
}

// dirIdentity identifies a directory; "" if path is not a directory. Without inodes on this
// platform, a directory recreated at the same path looks the same.
func dirIdentity(path string) string {
	fi, err := os.Stat(path)
	if err != nil || !fi.IsDir() {
		return ""
	}
	return "dir"
}
