package admission

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
)

// ProcHost returns a [Host] that reads Linux's /proc/loadavg and /proc/stat. On a system
// without them its functions report ok false.
func ProcHost() Host {
	return Host{Runnable: procRunnable, CPUTimes: procCPUTimes, CPUs: runtime.NumCPU()}
}

// procRunnable reads the runnable tasks from /proc/loadavg ("0.52 0.58 0.59 3/467 12345"),
// less the reader itself.
func procRunnable() (int, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	return parseRunnable(b)
}

func parseRunnable(b []byte) (int, bool) {
	f := bytes.Fields(b)
	if len(f) < 4 {
		return 0, false
	}
	running, _, ok := bytes.Cut(f[3], []byte("/"))
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(string(running))
	if err != nil || n < 1 {
		return 0, false
	}
	return n - 1, true
}

// procCPUTimes reads the machine's idle (idle and iowait) and total CPU time, in clock
// ticks, from the first line of /proc/stat.
func procCPUTimes() (idle, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	buf := make([]byte, 512) // the "cpu" line comes first and is far shorter
	n, _ := f.Read(buf)
	return parseCPUTimes(buf[:n])
}

func parseCPUTimes(b []byte) (idle, total uint64, ok bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	// user nice system idle iowait irq softirq steal guest guest_nice; guest time is
	// already counted in user and nice.
	for i, s := range f[1:] {
		if i >= 8 {
			break
		}
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return idle, total, true
}
