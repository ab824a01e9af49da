package cninetwork

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/atomicfile"
	"github.com/containernetworking/cni/libcni"
)

// recordsDir is where the Plugin keeps its records by default, under the cache dir.
const recordsDir = "cnishim/attachments"

// recordKind marks a record's format.
const recordKind = "cnishimAttachmentsV1"

// recordStore holds the Plugin's proof of what it made: for each sandbox it set up, the
// attachments it made or was about to make, each with the network configuration and runtime
// arguments it ran with. A record is written before the first plugin of a set-up runs and
// removed only once its attachments were deleted (or rolled back), so it covers a set-up cut
// off by a crash, one whose rollback failed, and every running pod. libcni's cache cannot serve
// for this: it holds an attachment only once its whole chain succeeded, and it is shared by
// every runtime on the node (the kubelet, containerd, CRI-O, podman), so an entry in it proves
// nothing about who made it. GC deletes only what a record names.
//
// Records are written and removed with package atomicfile, under the same fsync rule as the
// CRI runtime's sandbox records: a put or a remove that returned is on the disk, and a crash or
// a power cut leaves a record whole, as it was before the last put or after it. So a set-up
// cut off by a power cut comes back with the record of what it was about to make, never an
// empty file that no teardown acts on, and a sandbox a runtime recorded READY once its set-up
// returned has its attachments on record. An empty record can still be found, left by a
// version that did not sync its records, or by hand: get treats it as no record (as libcni
// skips an unreadable cache entry), so the teardown falls back to the cache. A non-empty
// record that does not parse is an error naming the file: something other than this store
// wrote it. Temporary files of a put cut off by a crash are removed by list once they are a
// minute old: a younger one may be a put under way.
type recordStore struct {
	dir string
}

// record is the file format.
type record struct {
	Kind      string `json:"kind"`
	SandboxID string `json:"sandboxID"`
	// Attachments are in set-up order; teardown goes in reverse.
	Attachments []*libcni.NetworkAttachment `json:"attachments"`
}

func (s recordStore) path(sandboxID string) string {
	return filepath.Join(s.dir, sandboxID+".json")
}

// put records atts as sandboxID's attachments, replacing any earlier record.
func (s recordStore) put(sandboxID string, atts []*libcni.NetworkAttachment) error {
	data, err := json.Marshal(record{Kind: recordKind, SandboxID: sandboxID, Attachments: atts})
	if err != nil {
		return fmt.Errorf("record attachments: %w", err)
	}
	if err := atomicfile.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("record attachments: %w", err)
	}
	if err := atomicfile.WriteFile(s.path(sandboxID), data, 0o600); err != nil {
		return fmt.Errorf("record attachments: %w", err)
	}
	return nil
}

// get returns the attachments recorded for sandboxID; none if nothing is recorded.
func (s recordStore) get(sandboxID string) ([]*libcni.NetworkAttachment, error) {
	path := s.path(sandboxID)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attachment record: %w", err)
	}
	if len(data) == 0 {
		// put syncs a record's data before it renames it into place, so no crash leaves one
		// empty; an empty one was left by an earlier version that did not, when the node lost
		// power: nothing can be learnt from it.
		return nil, nil
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("attachment record %s: %w (remove the file once the sandbox's network is released)", path, err)
	}
	if rec.Kind != recordKind || rec.SandboxID != sandboxID {
		return nil, fmt.Errorf("attachment record %s: not a record of sandbox %s (kind %q, sandbox %q)", path, sandboxID, rec.Kind, rec.SandboxID)
	}
	return rec.Attachments, nil
}

// remove deletes sandboxID's record; none is not an error.
func (s recordStore) remove(sandboxID string) error {
	if err := atomicfile.Remove(s.path(sandboxID)); err != nil {
		return fmt.Errorf("remove attachment record: %w", err)
	}
	return nil
}

// list returns the sandbox IDs with a record, and removes temporary files abandoned by a
// crash.
func (s recordStore) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attachment records: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if atomicfile.IsTemp(e.Name()) {
			// A put writes its temporary file and renames it within milliseconds: one a
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

// teardownOrder returns the attachments to delete for a sandbox, in the order to delete them:
// the recorded ones in the reverse of their set-up order, each as it was recorded (the
// configuration and arguments it ran with, which libcni caches too once its chain succeeded),
// with any attachment cached for the sandbox that no record covers (made before records were
// kept) before them, and the built-in loopback network last.
func teardownOrder(cached, recorded []*libcni.NetworkAttachment) []*libcni.NetworkAttachment {
	covered := func(c *libcni.NetworkAttachment) bool {
		for _, r := range recorded {
			if r.Network == c.Network && r.IfName == c.IfName {
				return true
			}
		}
		return false
	}
	var extra []*libcni.NetworkAttachment
	for _, c := range cached {
		if !covered(c) {
			extra = append(extra, c)
		}
	}
	sortForTeardown(extra)
	out := make([]*libcni.NetworkAttachment, 0, len(extra)+len(recorded))
	var lo []*libcni.NetworkAttachment
	for _, a := range extra {
		if isLoopback(a) {
			lo = append(lo, a)
		} else {
			out = append(out, a)
		}
	}
	for i := len(recorded) - 1; i >= 0; i-- {
		if isLoopback(recorded[i]) {
			lo = append(lo, recorded[i])
		} else {
			out = append(out, recorded[i])
		}
	}
	return append(out, lo...)
}
