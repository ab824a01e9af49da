package confwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/klog/v2"
)

// scanState is what scans remember between each other. Guarded by Watcher.scanMu.
type scanState struct {
	// seq numbers scans; cache entries record the last scan that used them.
	seq uint64
	// cache holds validation results keyed by file path, content digest and the identity of
	// every plugin binary the network uses (see validate).
	cache map[string]*validation
	// files holds, per configuration file, what the last scan published for it.
	files map[string]*fileState
	// recheckAt is the last scan's scanResult.recheckAt.
	recheckAt time.Time
	// parsed caches parseFile's results by extension and content digest.
	parsed map[string]*parsedFile
	// bins resolves plugin types to binaries within one scan: every network of a scan sees
	// the same binary for a type, and each is looked up and stat'ed once.
	bins map[string]pluginBinary
}

// parsedFile is a cached parseFile result.
type parsedFile struct {
	list *libcni.NetworkConfigList
	err  error
	used uint64
}

// pluginBinary is a plugin type resolved in the bin dirs during one scan.
type pluginBinary struct {
	id  string // fileIdentity; "" when not found
	err error
}

func newScanState() scanState {
	return scanState{cache: map[string]*validation{}, files: map[string]*fileState{}, parsed: map[string]*parsedFile{}}
}

// parse returns parseFile's result for the bytes of path, from the cache when the same
// extension and bytes were parsed before. sum is the bytes' digest.
func (st *scanState) parse(path string, data []byte, sum string) (*libcni.NetworkConfigList, error) {
	key := filepath.Ext(path) + "\x00" + sum
	p, ok := st.parsed[key]
	if !ok {
		p = &parsedFile{}
		p.list, p.err = parseFile(path, data)
		st.parsed[key] = p
	}
	p.used = st.seq
	return p.list, p.err
}

// fileState is what the last scan published for one configuration file.
type fileState struct {
	// net is the valid network last published from this file (fresh or held); nil if none.
	net *Network
	// While the file is held (see Scan): heldSince is when it first failed to load,
	// brokenDigest identifies the failing content and brokenSince is when that content
	// was first seen.
	heldSince    time.Time
	brokenSince  time.Time
	brokenDigest string
}

// scanResult is what one scan tells the watch loop.
type scanResult struct {
	snap *Snapshot
	// subdirs are the plugin subdirectories the scan consulted; the loop watches them.
	subdirs []string
	// recheckAt, when not zero, is when a held file must be looked at again.
	recheckAt time.Time
	// cancelled is set when ctx ended during the scan; nothing was published.
	cancelled bool
}

// Scan rescans the directory synchronously, publishes the result if it differs from the
// current snapshot, and returns the current snapshot. It execs each plugin's VERSION only when
// the network's content or the plugin binary changed since a previous scan. If ctx ends during
// the scan, Scan publishes nothing and returns the previous snapshot. Scans are serialized.
//
// Half-written files. A configuration file is never selected from a partial write: a file cut
// short is not valid JSON, so it fails to load, and loading is all-or-nothing. What a partial
// write could still do is make a file that was valid disappear for a moment and switch the
// default network. So the rule is: when a file whose previous version was published as a valid
// network fails to load (read or parse error, including its plugin subdirectory), that previous
// version stays published ("held") until the file loads again, is removed, or has failed with
// the same bytes for one quiet window of the debounce (100 ms), or has been held for the
// debounce's upper bound in all. Run rescans when a hold is due to end. A file that fails
// validation (a plugin missing or not supporting the cniVersion) is complete, and is skipped at
// once; so is a file that never loaded.
func (w *Watcher) Scan(ctx context.Context) *Snapshot {
	res := w.scan(ctx, false)
	if !res.recheckAt.IsZero() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return res.snap
}

// candidate is one configuration file's outcome in a scan.
type candidate struct {
	path string
	net  *Network
	err  error
}

// scan reads the whole directory and publishes. full revalidates networks whose cached
// validation failed (the periodic resync), in case the failure was transient.
func (w *Watcher) scan(ctx context.Context, full bool) scanResult {
	w.scanMu.Lock()
	defer w.scanMu.Unlock()
	st := &w.st
	st.seq++
	w.memo.seq = st.seq
	now := w.now()
	quiet, bound := w.opts.debounce, w.opts.maxDebounce

	var (
		res      scanResult
		cands    []candidate
		dirErr   error
		newFiles = map[string]*fileState{}
	)
	st.bins = map[string]pluginBinary{}
	entries, err := os.ReadDir(w.dir)
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	hasEntry := func(name string) bool { return names[name] }
	switch {
	case errors.Is(err, os.ErrNotExist):
		dirErr = errors.New("directory does not exist")
	case err != nil:
		dirErr = err
	}
	for _, e := range entries {
		if e.IsDir() || !isConfFile(e.Name()) {
			continue
		}
		path := filepath.Join(w.dir, e.Name())
		data, err := readConfig(path)
		if errors.Is(err, errIsDir) {
			continue
		}
		var (
			l   loaded
			sum string
		)
		if err == nil {
			sum = digestParts([2][]byte{nil, data})
			var base *libcni.NetworkConfigList
			if base, err = st.parse(path, data, sum); err == nil {
				l, err = completeList(w.dir, path, data, base, hasEntry)
			}
		}
		if l.subdir != "" {
			res.subdirs = append(res.subdirs, l.subdir)
		}
		prev := st.files[path]
		if err != nil {
			// The file does not load. Hold its previous valid network, if any, per the
			// rule in Scan's comment.
			broken := "error:" + err.Error()
			if sum != "" {
				broken = sum
			}
			if prev == nil || prev.net == nil {
				cands = append(cands, candidate{path: path, err: err})
				continue
			}
			fs := &fileState{net: prev.net, heldSince: prev.heldSince, brokenSince: prev.brokenSince, brokenDigest: prev.brokenDigest}
			if fs.heldSince.IsZero() {
				fs.heldSince = now
			}
			if fs.brokenDigest != broken {
				fs.brokenDigest, fs.brokenSince = broken, now
			}
			due := fs.brokenSince.Add(quiet)
			if end := fs.heldSince.Add(bound); end.Before(due) {
				due = end
			}
			if !now.Before(due) {
				cands = append(cands, candidate{path: path, err: err})
				continue
			}
			newFiles[path] = fs
			cands = append(cands, candidate{path: path, net: prev.net})
			if res.recheckAt.IsZero() || due.Before(res.recheckAt) {
				res.recheckAt = due
			}
			klog.FromContext(ctx).V(2).Info("Keeping the previous CNI config while the file does not load", "path", path, "err", err, "until", due)
			continue
		}
		net, err := w.validate(ctx, path, l, full)
		if ctx.Err() != nil {
			res.snap, res.cancelled = w.Snapshot(), true
			return res
		}
		if err != nil {
			cands = append(cands, candidate{path: path, err: err})
			continue
		}
		newFiles[path] = &fileState{net: net}
		cands = append(cands, candidate{path: path, net: net})
	}
	st.files = newFiles
	st.recheckAt = res.recheckAt
	for k, v := range st.cache {
		if v.used != st.seq {
			delete(st.cache, k)
		}
	}
	for k, v := range st.parsed {
		if v.used != st.seq {
			delete(st.parsed, k)
		}
	}
	w.memo.sweep()

	snap := w.build(cands, dirErr)
	old := w.Snapshot()
	if old.Generation > 0 && sameContent(old, snap) {
		res.snap = old
		return res
	}
	snap.Generation = old.Generation + 1
	w.publish(snap)
	logChanges(klog.FromContext(ctx), old, snap)
	res.snap = snap
	return res
}

// validate checks a loaded network: every plugin type is a bare name whose binary is in a
// bin dir, and every binary supports the cniVersion (libcni's ValidateNetworkList, which execs
// VERSION). Results are cached by file path, content digest and each binary's identity, so an
// unchanged network is never revalidated; a cached failure is retried when full is set.
func (w *Watcher) validate(ctx context.Context, path string, l loaded, full bool) (*Network, error) {
	st := &w.st
	ids := make([]string, 0, len(l.list.Plugins))
	types := make([]string, 0, len(l.list.Plugins))
	for i, p := range l.list.Plugins {
		t := p.Network.Type
		switch {
		case t == "":
			return nil, fmt.Errorf("plugin %d has no type", i)
		case strings.ContainsAny(t, `/\`) || t == "." || t == "..":
			return nil, fmt.Errorf("plugin type %q is not a bare binary name", t)
		}
		bin, ok := st.bins[t]
		if !ok {
			bin = w.resolve(t)
			st.bins[t] = bin
		}
		if bin.err != nil {
			return nil, bin.err
		}
		ids = append(ids, bin.id)
		types = append(types, t)
	}
	key := path + "\x00" + l.digest + "\x00" + strings.Join(ids, "\x00")
	if v, ok := st.cache[key]; ok && (v.err == nil || !full) {
		v.used = st.seq
		return v.net, v.err
	}
	vctx, cancel := context.WithTimeout(ctx, w.opts.validateTimeout)
	caps, err := w.cni.ValidateNetworkList(vctx, l.list)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	v := &validation{used: st.seq}
	if err != nil {
		v.err = fmt.Errorf("plugins of network %q: %w", l.list.Name, err)
	} else {
		slices.Sort(caps)
		v.net = &Network{
			File:         path,
			Name:         l.list.Name,
			CNIVersion:   l.list.CNIVersion,
			PluginTypes:  types,
			Capabilities: caps,
			Digest:       l.digest,
			Config:       l.list,
		}
	}
	st.cache[key] = v
	return v.net, v.err
}

// resolve finds the binary of plugin type t in the bin dirs (with the executor's
// FindInPath, as libcni does) and identifies it.
func (w *Watcher) resolve(t string) pluginBinary {
	path, err := w.memo.FindInPath(t, w.opts.binDirs)
	if err != nil {
		return pluginBinary{err: fmt.Errorf("plugin %q not found in %v", t, w.opts.binDirs)}
	}
	id, err := fileIdentity(path)
	if err != nil {
		return pluginBinary{err: fmt.Errorf("plugin %q: %w", t, err)}
	}
	w.memo.touch(id)
	return pluginBinary{id: id}
}

// build turns the scan's candidates into a Snapshot (without a generation): the valid networks
// in file order, the first file of each name winning; the skipped files with reasons; the
// default network; and the readiness error.
func (w *Watcher) build(cands []candidate, dirErr error) *Snapshot {
	s := &Snapshot{Dir: w.dir}
	byName := map[string]*Network{}
	for _, c := range cands {
		if c.err != nil {
			s.Skipped = append(s.Skipped, Skipped{File: c.path, Reason: c.err})
			continue
		}
		if first, dup := byName[c.net.Name]; dup {
			s.Skipped = append(s.Skipped, Skipped{File: c.path, Reason: fmt.Errorf("duplicate network name %q: %s defines it first", c.net.Name, filepath.Base(first.File))})
			continue
		}
		byName[c.net.Name] = c.net
		s.Networks = append(s.Networks, c.net)
	}
	pin := w.opts.networkName
	switch {
	case pin != "":
		s.Default = byName[pin]
	case len(s.Networks) > 0:
		s.Default = s.Networks[0]
	}
	if s.Default != nil {
		return s
	}

	var why []string
	for _, sk := range s.Skipped {
		why = append(why, filepath.Base(sk.File)+": "+sk.Reason.Error())
	}
	if pin != "" && len(s.Networks) > 0 {
		names := make([]string, len(s.Networks))
		for i, n := range s.Networks {
			names[i] = fmt.Sprintf("%q", n.Name)
		}
		why = append(why, "valid networks are "+strings.Join(names, ", "))
	}
	switch {
	case dirErr != nil:
		why = []string{dirErr.Error()}
	case len(cands) == 0:
		why = []string{"no .conf, .conflist or .json files"}
	}
	msg := "no valid CNI network config in " + w.dir + ": " + strings.Join(why, "; ")
	if pin != "" {
		msg = fmt.Sprintf("no valid CNI network config named %q in %s: %s", pin, w.dir, strings.Join(why, "; "))
	}
	s.Err = &notReadyError{msg: msg, pinned: pin != ""}
	return s
}

// notReadyError is Snapshot.Err: it wraps ErrNotReady, and errPinnedNotFound when pinned.
type notReadyError struct {
	msg    string
	pinned bool
}

func (e *notReadyError) Error() string { return e.msg }

func (e *notReadyError) Unwrap() []error {
	if e.pinned {
		return []error{ErrNotReady, errPinnedNotFound}
	}
	return []error{ErrNotReady}
}

// sameContent reports whether two snapshots say the same thing, so that a rescan that found
// nothing new does not bump the generation.
func sameContent(a, b *Snapshot) bool {
	if a.Dir != b.Dir || !sameNetwork(a.Default, b.Default) ||
		len(a.Networks) != len(b.Networks) || len(a.Skipped) != len(b.Skipped) ||
		errString(a.Err) != errString(b.Err) {
		return false
	}
	for i := range a.Networks {
		if !sameNetwork(a.Networks[i], b.Networks[i]) {
			return false
		}
	}
	for i := range a.Skipped {
		if a.Skipped[i].File != b.Skipped[i].File || errString(a.Skipped[i].Reason) != errString(b.Skipped[i].Reason) {
			return false
		}
	}
	return true
}

func sameNetwork(a, b *Network) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.File == b.File && a.Digest == b.Digest && a.Name == b.Name &&
		a.CNIVersion == b.CNIVersion && slices.Equal(a.PluginTypes, b.PluginTypes) &&
		slices.Equal(a.Capabilities, b.Capabilities)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// logChanges logs what a publish changed at V(2), the level of routine state changes: the
// default network and the skipped files. Not being ready is no error of the watcher's: it is
// in the Snapshot, and the caller reports it as its users need.
func logChanges(logger klog.Logger, old, cur *Snapshot) {
	logger = logger.V(2)
	if !logger.Enabled() {
		return
	}
	switch {
	case cur.Default != nil && !sameNetwork(old.Default, cur.Default):
		logger.Info("Selected default CNI network", "path", cur.Default.File, "network", cur.Default.Name, "cniVersion", cur.Default.CNIVersion)
	case cur.Default == nil && (old.Default != nil || errString(old.Err) != errString(cur.Err)):
		logger.Info("No default CNI network", "err", cur.Err)
	}
	seen := map[string]string{}
	for _, sk := range old.Skipped {
		seen[sk.File] = errString(sk.Reason)
	}
	for _, sk := range cur.Skipped {
		if r, ok := seen[sk.File]; !ok || r != errString(sk.Reason) {
			logger.Info("Skipping CNI config", "path", sk.File, "err", sk.Reason)
		}
	}
}
