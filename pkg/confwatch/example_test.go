package confwatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cnishim/cnishim/pkg/confwatch"
)

// Example shows the usual life of a Watcher: Run in a goroutine owned by the caller, Wait for
// the first answer, read snapshots, follow changes.
func Example() {
	dir, _ := os.MkdirTemp("", "netd")
	defer os.RemoveAll(dir)

	w, err := confwatch.New(dir, confwatch.WithBinDirs(confwatch.DefaultBinDir))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	s, err := w.Wait(ctx, 0) // the first scan
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(errors.Is(s.Err, confwatch.ErrNotReady))

	cancel()
	<-done
	// Output: true
}

// ExampleWatcher_Scan scans once, without watching, and reads the result.
func ExampleWatcher_Scan() {
	dir, _ := os.MkdirTemp("", "netd")
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "10-mynet.conflist"), []byte(`{"cniVersion":"1.0.0","name":"mynet","plugins":[{"type":"no-such-plugin"}]}`), 0o644)

	w, _ := confwatch.New(dir, confwatch.WithBinDirs(filepath.Join(dir, "bin")))
	s := w.Scan(context.Background())
	for _, sk := range s.Skipped {
		fmt.Println(filepath.Base(sk.File), "skipped")
	}
	fmt.Println(s.Default == nil, errors.Is(s.Err, confwatch.ErrNotReady))
	// Output:
	// 10-mynet.conflist skipped
	// true true
}
