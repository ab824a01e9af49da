package runner

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, c := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p90 of 1..100", ms(hundred...), 90, 90 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"max", ms(hundred...), 100, 100 * time.Millisecond},
		{"p50 of four is the second", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Percentile(c.ds, c.p); got != c.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", c.ds, c.p, got, c.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5}, 5},
	} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestPodsPerSec(t *testing.T) {
	ph := &Phase{Latencies: make([]time.Duration, 50), Wall: 5 * time.Second}
	if got := PodsPerSec(ph); got != 10 {
		t.Errorf("PodsPerSec = %v, want 10", got)
	}
	if got := PodsPerSec(&Phase{}); got != 0 {
		t.Errorf("PodsPerSec of nothing = %v, want 0", got)
	}
}
