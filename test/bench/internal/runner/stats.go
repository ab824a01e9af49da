package runner

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (nearest rank) of ds; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// PodsPerSec is a batch's throughput: pods over wall time.
func PodsPerSec(ph *Phase) float64 {
	if ph.Wall <= 0 {
		return 0
	}
	return float64(len(ph.Latencies)) / ph.Wall.Seconds()
}

// Median returns the median of xs (the mean of the middle two for an even count); NaN for
// none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
