//go:build linux

package confwatch

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openConfig opens a configuration file for reading. O_NONBLOCK keeps a FIFO that carries a
// configuration extension from blocking the scan; readConfig then rejects it as not regular.
func openConfig(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// isSymlinkLoop reports whether err is the kernel's "too many levels of symbolic links".
func isSymlinkLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }

// fileIdentity describes a file well enough to notice it was replaced or rewritten: its size,
// modification time, mode, inode and device. It follows symlinks.
func fileIdentity(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return fmt.Sprintf("%s:%d:%d.%d:%o:%d:%d", path, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Mode, st.Ino, st.Dev), nil
}

// dirIdentity identifies a directory by device and inode, so a directory deleted and
// recreated at the same path is noticed; "" if path is not a directory.
func dirIdentity(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
