//go:build linux

package host

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is the CPU time of this process and of its waited-for children (the plugins and
// everything they ran), as getrusage reports them.
type Usage struct {
	Self, Children time.Duration
}

// ReadUsage returns the process's CPU usage so far.
func ReadUsage() (Usage, error) {
	var self, children unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return Usage{}, fmt.Errorf("getrusage self: %w", err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &children); err != nil {
		return Usage{}, fmt.Errorf("getrusage children: %w", err)
	}
	return Usage{Self: cpu(&self), Children: cpu(&children)}, nil
}

func cpu(r *unix.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// Sub returns u - v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{Self: u.Self - v.Self, Children: u.Children - v.Children}
}

// Memory returns the process's resident set size now (VmRSS) and its peak (VmHWM), in KiB.
func Memory() (rss, peak int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	return ParseMemory(b)
}

// ParseMemory reads VmRSS and VmHWM, in KiB, from the contents of a /proc/<pid>/status file.
func ParseMemory(status []byte) (rss, peak int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			rss, err = kib(v)
		case "VmHWM":
			peak, err = kib(v)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("process status %s: %w", k, err)
		}
	}
	return rss, peak, sc.Err()
}

func kib(v string) (int64, error) {
	return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
}

// ResetPeakMemory resets the process's peak RSS (VmHWM) to its current RSS.
func ResetPeakMemory() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// WaitQuiet waits until the machine's CPUs were less than a quarter busy over a short window,
// or max passes, so the kernel's asynchronous cleanup of the previous run's namespaces does
// not land in the next run's timed region. That cleanup runs on one kernel worker at a time,
// so on two CPUs it shows as half busy: the bar must be lower than that. It returns how long
// it waited.
func WaitQuiet(max time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < max {
		busy, err := busyFraction(250 * time.Millisecond)
		if err != nil || busy < 0.25 {
			break
		}
	}
	return time.Since(start)
}

func busyFraction(window time.Duration) (float64, error) {
	idle0, total0, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	time.Sleep(window)
	idle1, total1, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	if total1 == total0 {
		return 0, nil
	}
	return 1 - float64(idle1-idle0)/float64(total1-total0), nil
}

// cpuTimes returns the idle (idle + iowait) and total jiffies of all CPUs from /proc/stat.
func cpuTimes() (idle, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, nil
}
