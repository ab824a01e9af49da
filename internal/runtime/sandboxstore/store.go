// Package sandboxstore keeps cnishim's pod sandbox records: one JSON file per sandbox in a
// directory, each written and removed with package atomicfile (temporary file, fsync, rename,
// fsync of the directory), the same rule as the network plugin's records, so a record read back
// after a crash, even kill -9 or a power cut, is either the old version or the new one, never a
// mix, and a write or deletion that returned holds.
//
// The Store also holds every record in memory, indexed by ID, and resolves unique ID prefixes
// the way crictl users expect from containerd. It reserves a sandbox's name (name, namespace,
// UID and attempt) until its record is deleted.
package sandboxstore

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cnishim/cnishim/internal/lib/atomicfile"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNotFound: no record has the given ID or ID prefix.
	ErrNotFound = errors.New("pod sandbox not found")
	// ErrAmbiguous: more than one record has the given ID prefix.
	ErrAmbiguous = errors.New("pod sandbox ID prefix is ambiguous")
	// ErrNameReserved: a record with the same name, namespace, UID and attempt exists.
	ErrNameReserved = errors.New("pod sandbox name is reserved")
	// ErrExists: a record with the same ID exists.
	ErrExists = errors.New("pod sandbox already exists")
)

// State is the lifecycle state of a sandbox record.
type State string

const (
	// StateCreating: the record was written before the sandbox's network namespace and network
	// were set up. A record still in this state at start-up belongs to a RunPodSandbox that a
	// crash cut off.
	StateCreating State = "creating"
	// StateReady: the sandbox's network is set up.
	StateReady State = "ready"
	// StateStopping: the sandbox's teardown began and has not succeeded yet: its network may be
	// partly released. A record in this state at start-up belongs to a stop that a crash cut
	// off, or that failed; it is torn down again.
	StateStopping State = "stopping"
	// StateNotReady: the sandbox was stopped (its network torn down, its namespace removed), or
	// its set-up was cut off by a crash and has been rolled back.
	StateNotReady State = "notready"
)

// Record is what cnishim keeps of one pod sandbox. A Record obtained from a Store is a copy;
// Config points to a value shared with the Store that callers must not modify.
type Record struct {
	// ID is the sandbox ID, 64 lower-case hex characters.
	ID string `json:"id"`
	// State is the lifecycle state.
	State State `json:"state"`
	// CreatedAt is the creation time in nanoseconds since the Unix epoch.
	CreatedAt int64 `json:"createdAt"`
	// NetNSPath is the path of the sandbox's network namespace; empty for a sandbox in the
	// host's network namespace.
	NetNSPath string `json:"netnsPath,omitempty"`
	// HostNetwork is true when the sandbox asked for the node's network namespace: no network
	// namespace is created and no CNI plugin runs for it.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// RuntimeHandler is the runtime handler the sandbox was run with.
	RuntimeHandler string `json:"runtimeHandler,omitempty"`
	// IPs are the pod's IPs from its network set-up, primary first.
	IPs []string `json:"ips,omitempty"`
	// Reason says why the sandbox is not ready when that was not a plain stop, e.g. a set-up
	// cut off by a crash.
	Reason string `json:"reason,omitempty"`
	// Config is the sandbox's configuration as the runtime's client sent it.
	Config *runtimeapi.PodSandboxConfig `json:"config"`
}

// Key returns the name the record reserves: name, namespace, UID and attempt.
func (r *Record) Key() string {
	m := r.Config.GetMetadata()
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

// NewID returns a new random sandbox ID of 64 hex characters.
func NewID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return hex.EncodeToString(b[:])
}

// Store is a directory of sandbox records with an in-memory index. Its methods are safe for
// concurrent use, with one rule: calls that write one sandbox's record (Create, Update, Delete
// of the same ID) must not overlap; a caller holds its own per-sandbox lock for them. Files are
// written outside the Store's lock, so reads and writes of other sandboxes never wait for an
// fsync.
type Store struct {
	dir string

	// mu guards records, names, pending, gen and sorted; it is never held during file I/O.
	mu      sync.Mutex
	records map[string]*Record
	names   map[string]string // Key() -> ID, for records and pending creations
	pending map[string]bool   // IDs whose Create is writing its file
	// gen counts the changes to records; sorted holds records' pointers oldest first as of
	// generation gen, or is nil. List builds it when a change made it stale: the kubelet lists
	// far more often than sandboxes change. Neither the slice nor a stored record is ever
	// changed in place.
	gen    uint64
	sorted []*Record
}

const recordExt = ".json"

// Open loads every record in dir, creating dir (mode 0700) if it does not exist. Leftover
// temporary files from a write cut off by a crash (hidden files, see atomicfile.IsTemp) are
// removed. A record file that cannot be read or parsed is an error naming the file: Open does
// not guess at a sandbox's state.
func Open(dir string) (*Store, error) {
	if err := atomicfile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox store %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox store %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox store %s: %w", dir, err)
	}
	s := &Store{dir: dir, records: map[string]*Record{}, names: map[string]string{}, pending: map[string]bool{}}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		if atomicfile.IsTemp(name) {
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("sandbox store: remove leftover %s: %w", path, err)
			}
			continue
		}
		if !strings.HasSuffix(name, recordExt) || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("sandbox record %s: %w", path, err)
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("sandbox record %s: %w", path, err)
		}
		if err := validate(&r); err != nil {
			return nil, fmt.Errorf("sandbox record %s: %w", path, err)
		}
		if r.ID+recordExt != name {
			return nil, fmt.Errorf("sandbox record %s: holds ID %s", path, r.ID)
		}
		s.records[r.ID] = &r
		s.names[r.Key()] = r.ID
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func validate(r *Record) error {
	if len(r.ID) != 64 {
		return fmt.Errorf("ID %q: want 64 hex characters", r.ID)
	}
	if _, err := hex.DecodeString(r.ID); err != nil {
		return fmt.Errorf("ID %q: want 64 hex characters", r.ID)
	}
	switch r.State {
	case StateCreating, StateReady, StateStopping, StateNotReady:
	default:
		return fmt.Errorf("sandbox %s: unknown state %q", r.ID, r.State)
	}
	if r.Config.GetMetadata() == nil {
		return fmt.Errorf("sandbox %s: no metadata", r.ID)
	}
	return nil
}

// Create writes a new record. It fails with ErrExists if the ID is taken and with
// ErrNameReserved (naming the sandbox that holds it) if another record has the same name,
// namespace, UID and attempt.
func (s *Store) Create(r Record) error {
	if err := validate(&r); err != nil {
		return err
	}
	key := r.Key()
	s.mu.Lock()
	if _, ok := s.records[r.ID]; ok || s.pending[r.ID] {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrExists, r.ID)
	}
	if id, ok := s.names[key]; ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q is held by sandbox %s; stop and remove it first", ErrNameReserved, key, id)
	}
	s.names[key] = r.ID // reserved while the file is written
	s.pending[r.ID] = true
	s.mu.Unlock()

	err := s.write(&r)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, r.ID)
	if err != nil {
		delete(s.names, key)
		return err
	}
	s.records[r.ID] = &r
	s.changed()
	return nil
}

// changed notes a change to s.records. Called with s.mu held.
func (s *Store) changed() {
	s.gen++
	s.sorted = nil
}

// Update replaces the record with the same ID. The name it reserves does not change.
func (s *Store) Update(r Record) error {
	if err := validate(&r); err != nil {
		return err
	}
	s.mu.Lock()
	old, ok := s.records[r.ID]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, r.ID)
	}
	if old.Key() != r.Key() {
		return fmt.Errorf("sandbox %s: update changes its name from %q to %q", r.ID, old.Key(), r.Key())
	}
	if err := s.write(&r); err != nil {
		return err
	}
	s.mu.Lock()
	s.records[r.ID] = &r
	s.changed()
	s.mu.Unlock()
	return nil
}

// Delete removes the record with the given full ID and releases its name. Deleting a record
// that does not exist is not an error.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	r, ok := s.records[id]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	if err := atomicfile.Remove(s.path(id)); err != nil {
		return fmt.Errorf("sandbox %s: delete record: %w", id, err)
	}
	s.mu.Lock()
	delete(s.records, id)
	delete(s.names, r.Key())
	s.changed()
	s.mu.Unlock()
	return nil
}

// Get returns the record whose ID is id, or else the only record whose ID starts with id. It
// fails with ErrNotFound or ErrAmbiguous.
func (s *Store) Get(id string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.lookup(id)
	if err != nil {
		return Record{}, err
	}
	return *r, nil
}

func (s *Store) lookup(id string) (*Record, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty ID", ErrNotFound)
	}
	if r, ok := s.records[id]; ok {
		return r, nil
	}
	var found *Record
	for k, r := range s.records {
		if strings.HasPrefix(k, id) {
			if found != nil {
				return nil, fmt.Errorf("%w: %q matches %s and %s", ErrAmbiguous, id, found.ID, r.ID)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return found, nil
}

// List returns a copy of every record, oldest first.
func (s *Store) List() []Record {
	// A stored record is never changed (Create and Update store a new one), so pointers are
	// sorted, outside the lock, and kept until the next change; the records are copied once,
	// in order. Sorting the records themselves on every call moved and compared ~130-byte
	// values some 10⁴ times for 1,000 sandboxes, on every ListPodSandbox.
	s.mu.Lock()
	ptrs, gen := s.sorted, s.gen
	stale := ptrs == nil
	if stale {
		ptrs = make([]*Record, 0, len(s.records))
		for _, r := range s.records {
			ptrs = append(ptrs, r)
		}
	}
	s.mu.Unlock()
	if stale {
		slices.SortFunc(ptrs, compareRecords)
		s.mu.Lock()
		if s.gen == gen {
			s.sorted = ptrs
		}
		s.mu.Unlock()
	}
	out := make([]Record, len(ptrs))
	for i, r := range ptrs {
		out[i] = *r
	}
	return out
}

// compareRecords orders records oldest first, then by ID.
func compareRecords(a, b *Record) int {
	if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func (s *Store) path(id string) string { return filepath.Join(s.dir, id+recordExt) }

// write stores r in its file atomically. Called without s.mu; writes of one ID never overlap.
func (s *Store) write(r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sandbox %s: encode record: %w", r.ID, err)
	}
	if err := atomicfile.WriteFile(s.path(r.ID), data, 0o600); err != nil {
		return fmt.Errorf("sandbox %s: record: %w", r.ID, err)
	}
	return nil
}
