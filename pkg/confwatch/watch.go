package confwatch

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// Backoff after a watcher error, doubling up to the maximum.
const (
	minErrBackoff = 100 * time.Millisecond
	maxErrBackoff = 30 * time.Second
)

// errRunning is returned by Run when another Run of the same Watcher has not returned.
var errRunning = errors.New("confwatch: Run is already running")

// Run watches the directory until ctx ends, then returns ctx's error. It sets up its watches,
// scans once and publishes before it waits for anything, then rescans the whole directory
// after each burst of relevant events (a quiet window of 100 ms, at most 1 s), every minute (a
// safety net), at once when the kernel's event queue overflows, and when a file held by the
// half-written rule (see Scan) is due. It watches the conf dir, each network's plugin
// subdirectory and every bin dir; a directory that does not exist (yet, or any more) is
// watched through its nearest existing parent, and picked up when it appears. Run never
// returns on a watcher error: it logs it, backs off and goes on.
//
// Run is the only goroutine owner of a Watcher: every goroutine it starts (the fsnotify
// reader) has ended when it returns. Only one Run may run at a time; a second gets
// errRunning. Snapshot, Wait and Scan may be used concurrently with Run.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer w.running.Store(false)
	l := &loop{
		w:       w,
		logger:  klog.FromContext(ctx),
		watched: map[string]string{},
		timer:   time.NewTimer(time.Hour),
	}
	l.timer.Stop()
	defer l.timer.Stop()
	defer l.closeWatcher()
	l.openWatcher(time.Now())
	l.rescan(ctx, false)
	for {
		l.arm(time.Now())
		var events <-chan fsnotify.Event
		var errs <-chan error
		inject := w.injectErr
		if l.fsw != nil {
			events, errs = l.fsw.Events, l.fsw.Errors
		}
		if !l.errPausedUntil.IsZero() {
			errs, inject = nil, nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				l.lostWatcher(time.Now())
				continue
			}
			l.onEvent(ev, time.Now())
		case err, ok := <-errs:
			if !ok {
				l.lostWatcher(time.Now())
				continue
			}
			l.onError(ctx, err)
		case err := <-inject:
			l.onError(ctx, err)
		case <-w.kick:
			w.scanMu.Lock()
			at := w.st.recheckAt
			w.scanMu.Unlock()
			l.recheckAt = earliest(l.recheckAt, at)
		case <-l.timer.C:
			l.onTimer(ctx, time.Now())
		}
	}
}

// loop is Run's state; only Run's goroutine touches it.
type loop struct {
	w      *Watcher
	logger klog.Logger
	fsw    *fsnotify.Watcher
	// watched maps each directory given to fsw to its identity when added (see dirIdentity).
	watched map[string]string
	// subdirs are the plugin subdirectories of the last scan.
	subdirs []string

	// The one timer fires at the earliest of these deadlines; zero means unset.
	timer          *time.Timer
	burstStart     time.Time // first event of the current burst
	debounceAt     time.Time // rescan: quiet window after the last event, bounded
	recheckAt      time.Time // rescan: a held file is due
	resyncAt       time.Time // full rescan: safety net
	reopenAt       time.Time // retry creating the fsnotify watcher
	errPausedUntil time.Time // errors are not read until then (backoff)

	backoff   time.Duration
	lastErrAt time.Time
}

// targets are the directories Run watches: the conf dir, the plugin subdirectories, the bin
// dirs.
func (l *loop) targets() []string {
	t := append([]string{l.w.dir}, l.subdirs...)
	return append(t, l.w.opts.binDirs...)
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// arm sets the timer to the earliest deadline.
func (l *loop) arm(now time.Time) {
	at := earliest(earliest(l.debounceAt, l.recheckAt), earliest(l.resyncAt, earliest(l.reopenAt, l.errPausedUntil)))
	l.timer.Stop()
	if !at.IsZero() {
		l.timer.Reset(max(at.Sub(now), 0))
	}
}

func due(at, now time.Time) bool { return !at.IsZero() && !now.Before(at) }

func (l *loop) onTimer(ctx context.Context, now time.Time) {
	rescan := due(l.debounceAt, now) || due(l.recheckAt, now)
	full := due(l.resyncAt, now)
	if due(l.reopenAt, now) {
		l.reopenAt = time.Time{}
		rescan = l.openWatcher(now) || rescan
	}
	if due(l.errPausedUntil, now) {
		// Errors may have meant lost events: look again.
		l.errPausedUntil = time.Time{}
		rescan = true
	}
	if rescan || full {
		l.rescan(ctx, full)
	}
}

// debounce notes an event: the rescan happens one quiet window after the last event, but
// never later than the bound after the first event of the burst.
func (l *loop) debounce(now time.Time) {
	if l.burstStart.IsZero() {
		l.burstStart = now
	}
	l.debounceAt = now.Add(l.w.opts.debounce)
	if bound := l.burstStart.Add(l.w.opts.maxDebounce); bound.Before(l.debounceAt) {
		l.debounceAt = bound
	}
}

// rescan rescans the whole directory and brings the watches up to date. full also retries
// cached validation failures (the resync).
func (l *loop) rescan(ctx context.Context, full bool) {
	l.burstStart, l.debounceAt, l.recheckAt = time.Time{}, time.Time{}, time.Time{}
	l.rewatch()
	res := l.w.scan(ctx, full)
	if res.cancelled {
		return
	}
	now := time.Now()
	if l.w.opts.resync > 0 {
		l.resyncAt = now.Add(l.w.opts.resync)
	}
	l.recheckAt = res.recheckAt
	l.subdirs = res.subdirs
	if l.rewatch() {
		// A directory came into view after the scan read it, or a plugin subdirectory is
		// watched for the first time: whatever changed in between had no watch to report
		// it, so look once more.
		l.debounce(now)
	}
	if l.w.scanned != nil {
		select {
		case l.w.scanned <- res:
		case <-ctx.Done():
		}
	}
}

// openWatcher creates the fsnotify watcher, scheduling a retry with backoff on failure. It
// reports whether it created one.
func (l *loop) openWatcher(now time.Time) bool {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		l.bumpBackoff(now)
		l.reopenAt = now.Add(l.backoff)
		l.logger.Error(err, "Creating the CNI config watcher; retrying", "dir", l.w.dir, "after", l.backoff)
		return false
	}
	l.fsw = fsw
	clear(l.watched)
	return true
}

func (l *loop) closeWatcher() {
	if l.fsw != nil {
		_ = l.fsw.Close()
		l.fsw = nil
	}
}

// lostWatcher handles the fsnotify watcher closing under us: replace it.
func (l *loop) lostWatcher(now time.Time) {
	l.logger.Error(errors.New("fsnotify watcher closed"), "Watching CNI config directory", "dir", l.w.dir)
	l.closeWatcher()
	l.bumpBackoff(now)
	l.reopenAt = now.Add(l.backoff)
}

func (l *loop) bumpBackoff(now time.Time) {
	if now.Sub(l.lastErrAt) > 2*maxErrBackoff {
		l.backoff = 0
	}
	l.lastErrAt = now
	l.backoff = min(max(2*l.backoff, minErrBackoff), maxErrBackoff)
}

// onError handles a watcher error: an overflow means events were lost, so rescan at once;
// anything else is logged, and errors are not read again until a backoff has passed, after
// which the loop rescans.
func (l *loop) onError(ctx context.Context, err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		l.logger.Info("CNI config watch events overflowed; rescanning", "dir", l.w.dir)
		l.rescan(ctx, false)
		return
	}
	now := time.Now()
	l.bumpBackoff(now)
	l.errPausedUntil = now.Add(l.backoff)
	l.logger.Error(err, "Watching CNI config directory; backing off", "dir", l.w.dir, "backoff", l.backoff)
}

// onEvent debounces relevant events. A directory that was watched and is removed or renamed
// is forgotten, so the next rewatch adds it again if it comes back.
func (l *loop) onEvent(ev fsnotify.Event, now time.Time) {
	name := filepath.Clean(ev.Name)
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		delete(l.watched, name)
	}
	if l.relevant(name, ev.Op) {
		l.debounce(now)
	}
}

// relevant reports whether an event can change the scan's outcome:
//   - any create, write, remove or rename of a watched target directory or one of its missing
//     ancestors (the conf dir appearing or going);
//   - in the conf dir, a file with a configuration extension, or a name starting with ".."
//     (a ConfigMap mount swaps its "..data" symlink to a new "..<timestamp>" directory, which
//     changes what every config symlink points to without an event on the config's name);
//   - in a plugin subdirectory, a .conf file or a ".." name;
//   - in a bin dir, anything, chmod included: a binary made executable becomes usable.
//
// Chmod is otherwise ignored, as are other files.
func (l *loop) relevant(name string, op fsnotify.Op) bool {
	dir, base := filepath.Dir(name), filepath.Base(name)
	bins := l.w.opts.binDirs
	if !op.Has(fsnotify.Create) && !op.Has(fsnotify.Write) && !op.Has(fsnotify.Remove) && !op.Has(fsnotify.Rename) {
		return op.Has(fsnotify.Chmod) && slices.Contains(bins, dir)
	}
	for _, t := range l.targets() {
		if name == t || isUnder(t, name) {
			return true
		}
	}
	switch {
	case dir == l.w.dir:
		return isConfFile(base) || strings.HasPrefix(base, "..")
	case slices.Contains(l.subdirs, dir):
		return filepath.Ext(base) == pluginConfExtension || strings.HasPrefix(base, "..")
	case slices.Contains(bins, dir):
		return true
	}
	return false
}

// isUnder reports whether path p lies strictly below directory dir.
func isUnder(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// rewatch makes the fsnotify watches match the targets: each target directory that exists,
// else its nearest existing ancestor. It reports whether it added a watch.
func (l *loop) rewatch() bool {
	if l.fsw == nil {
		return false
	}
	want := map[string]bool{}
	for _, t := range l.targets() {
		p := t
		for dirIdentity(p) == "" {
			parent := filepath.Dir(p)
			if parent == p {
				break
			}
			p = parent
		}
		want[p] = true
	}
	added := false
	for p := range want {
		id := dirIdentity(p)
		if id == "" || l.watched[p] == id {
			continue
		}
		if err := l.fsw.Add(p); err != nil {
			l.logger.Error(err, "Watching CNI directory", "path", p)
			continue
		}
		l.watched[p] = id
		added = true
	}
	for p := range l.watched {
		if !want[p] {
			_ = l.fsw.Remove(p)
			delete(l.watched, p)
		}
	}
	return added
}
