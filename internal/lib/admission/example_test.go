package admission_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cnishim/cnishim/internal/lib/admission"
)

// A network plugin builds one Set and takes a slot in the right lane around
// each plugin chain it runs.
func Example() {
	metrics, err := admission.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		fmt.Println(err)
		return
	}
	limits := admission.DefaultLimits()
	limits.Add = 1 // e.g. from a --max-parallel-setups flag
	lanes := admission.NewSet(limits, metrics)

	setUp := func(ctx context.Context, pod string) error {
		release, err := lanes.Add.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("set up pod %s: %w", pod, err) // nothing ran
		}
		defer release()
		// ... run the ADD chain under ctx ...
		return nil
	}

	// One set-up holds the only Add slot, so a second one queues until its
	// context ends, while teardowns go ahead in their own lane.
	release, _ := lanes.Add.Acquire(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err = setUp(ctx, "default/web-1")
	fmt.Println(errors.Is(err, admission.ErrQueueTimeout), errors.Is(err, context.DeadlineExceeded))

	releaseDel, err := lanes.Del.Acquire(context.Background())
	fmt.Println(err)
	releaseDel()
	release()

	add := lanes.Add.Stats()
	fmt.Printf("%s: limit %d, %d admitted, %d timed out\n", add.Name, add.Limit, add.Admitted, add.TimedOut)
	// Output:
	// true true
	// <nil>
	// add: limit 1, 1 admitted, 1 timed out
}
