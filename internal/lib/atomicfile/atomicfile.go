// Package atomicfile writes and removes the files of a store, a directory that holds one file
// per record and nothing else, so that a crash, kill -9 and power cut alike, never leaves a
// record half-written, empty or mixed: each file is as it was before the last call on it or
// as that call left it, and a call that returned nil holds after any crash.
//
// The fsync rule, the one every store follows:
//
//   - A file's data is fsynced before the file is renamed over its target, so the rename can
//     never reach the disk before the data it names.
//   - A directory is fsynced after every rename or removal in it, and its parent after it was
//     created, so the name itself is on the disk when the call returns.
//   - A call returns nil only once all its syncs succeeded; an error means the change may or
//     may not survive a crash, and the caller's retry makes it durable.
//
// WriteFile's temporary files are hidden files (names starting with ".") in the target's
// directory, and a target may not be hidden, so IsTemp tells every temporary file a crash left
// behind from a record, old ones included. Removing them is the store's to decide: only it
// knows whether a write may be under way.
//
// On Windows, where a directory cannot be opened for syncing, directories are not synced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cnishim/cnishim/internal/lib/atomicfile/synctrace"
)

// fsync syncs f. A variable so that the package's tests can make it fail.
var fsync = (*os.File).Sync

// WriteFile replaces the file at path with one holding data, mode perm (before the umask),
// atomically and durably: it writes a temporary file in path's directory, fsyncs it, renames
// it over path and fsyncs the directory. The directory must exist (see MkdirAll). A reader
// sees the old file or the new one, never a part of either. On an error the temporary file is
// removed and path is the old file, or, if only the directory's sync failed, maybe the new
// one. Writes of one path must not overlap: the last rename wins.
func WriteFile(path string, data []byte, perm fs.FileMode) (retErr error) {
	dir, base := filepath.Split(path)
	if base == "" || strings.HasPrefix(base, ".") {
		return fmt.Errorf("write %s: hidden names are kept for temporary files", path)
	}
	f, err := createTemp(dir, base, perm)
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if retErr != nil {
			_ = f.Close() // a second Close only returns an error
			_ = os.Remove(tmp)
		}
	}()
	// The errors of package os name the operation and the file.
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := syncFile(f, false); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// createTemp creates a new hidden file for base in dir, open for writing. os.OpenFile opens
// every file close-on-exec, so a plugin started meanwhile does not inherit it.
func createTemp(dir, base string, perm fs.FileMode) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file for %s in %s: too many names taken", base, dir)
}

// IsTemp reports whether name, a file name in a store's directory, is one of WriteFile's
// temporary files, or another hidden file a store may treat as one.
func IsTemp(name string) bool { return strings.HasPrefix(name, ".") }

// Remove removes the file at path and fsyncs its directory. A path that does not exist is not
// an error; its directory is synced all the same, so that retrying a Remove whose sync failed
// makes the removal durable. A directory that does not exist holds nothing to remove.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err := syncDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// MkdirAll creates dir and any parents it lacks, each with mode perm (before the umask), and
// fsyncs the parent of each directory it created. A dir that exists is left as it is and
// costs one stat.
func MkdirAll(dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	var missing []string // deepest first
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs the directory dir, making the renames, creations and removals made in it so
// far durable.
func syncDir(dir string) error {
	if !canSyncDir {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return syncFile(d, true)
}

// syncFile fsyncs f and reports the sync to synctrace.
func syncFile(f *os.File, dir bool) error {
	if err := fsync(f); err != nil {
		return err
	}
	synctrace.Report(synctrace.Sync{Path: f.Name(), Dir: dir})
	return nil
}
