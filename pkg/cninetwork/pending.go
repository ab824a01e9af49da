package cninetwork

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// pendingDir is where set-ups under way are recorded, under the cache dir.
const pendingDir = "cnishim/setups"

// pendingKind marks a record's format.
const pendingKind = "cnishimSetupV1"

// pendingStore records, for each set-up under way, the attachments it is about to make: the
// network configuration and runtime arguments of each, written before the first plugin runs.
// libcni caches an attachment only once its whole chain has succeeded, so without this record a
// set-up cut off by a crash (or whose rollback failed) could only be torn down with whatever the
// default network is by then. A record is removed once the set-up succeeded (libcni's cache
// covers it) or its attachments were deleted.
//
// Records are written by rename, so a reader never sees half of one. They are not synced to
// disk, no more than libcni's cache or host-local's reservations beside them: a set-up in
// flight when the node loses power may come back as an empty file, which get treats as no
// record (as libcni skips an unreadable cache entry), so the teardown falls back to the cache
// and the current config. A non-empty record that does not parse is an error naming the file:
// something other than a crash wrote it. Temporary files of a put cut off by a crash are
// removed by list once they are a minute old.
type pendingStore struct {
	dir string
}

// pendingRecord is the file format.
type pendingRecord struct {
	Kind        string                      `json:"kind"`
	SandboxID   string                      `json:"sandboxID"`
	Attachments []*libcni.NetworkAttachment `json:"attachments"`
}

func newPendingStore(cacheDir string) pendingStore {
	return pendingStore{dir: filepath.Join(cacheDir, pendingDir)}
}

func (s pendingStore) path(sandboxID string) string {
	return filepath.Join(s.dir, sandboxID+".json")
}

// put records atts as the set-up under way of sandboxID.
func (s pendingStore) put(sandboxID string, atts []*libcni.NetworkAttachment) error {
	data, err := json.Marshal(pendingRecord{Kind: pendingKind, SandboxID: sandboxID, Attachments: atts})
	if err != nil {
		return fmt.Errorf("record set-up: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("record set-up: %w", err)
	}
	f, err := os.CreateTemp(s.dir, "."+sandboxID+".*")
	if err != nil {
		return fmt.Errorf("record set-up: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("record set-up: %w", err)
	}
	if err := os.Rename(f.Name(), s.path(sandboxID)); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("record set-up: %w", err)
	}
	return nil
}

// get returns the attachments recorded for sandboxID; none if nothing is recorded.
func (s pendingStore) get(sandboxID string) ([]*libcni.NetworkAttachment, error) {
	path := s.path(sandboxID)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read set-up record: %w", err)
	}
	if len(data) == 0 {
		// Written by rename, so empty only if the node lost power before the data reached
		// the disk: nothing can be learnt from it.
		return nil, nil
	}
	var rec pendingRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("set-up record %s: %w (remove the file once the sandbox's network is released)", path, err)
	}
	if rec.Kind != pendingKind || rec.SandboxID != sandboxID {
		return nil, fmt.Errorf("set-up record %s: not a record of sandbox %s (kind %q, sandbox %q)", path, sandboxID, rec.Kind, rec.SandboxID)
	}
	return rec.Attachments, nil
}

// remove deletes sandboxID's record; none is not an error.
func (s pendingStore) remove(sandboxID string) error {
	if err := os.Remove(s.path(sandboxID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove set-up record: %w", err)
	}
	return nil
}

// list returns the sandbox IDs with a record, and removes temporary files abandoned by a
// crash.
func (s pendingStore) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read set-up records: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			// A put writes its temporary file and renames it within microseconds: one a
			// minute old was left by a crash. Removing it is best effort: it holds no state
			// anyone reads, and GC must not fail over it.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
				_ = os.Remove(filepath.Join(s.dir, e.Name()))
			}
			continue
		}
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// staleTemp is the age past which list removes a temporary file of put.
const staleTemp = time.Minute

// withPending adds to cached the recorded attachments it lacks (by interface), so a set-up cut
// off before libcni cached some of its attachments is deleted with the configuration it ran.
func withPending(cached, pending []*libcni.NetworkAttachment) []*libcni.NetworkAttachment {
	out := append([]*libcni.NetworkAttachment(nil), cached...)
	for _, p := range pending {
		covered := false
		for _, c := range cached {
			if c.IfName == p.IfName {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
