package admission

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// maxTreesSampled bounds how many process trees one look at the chains in flight reads.
const maxTreesSampled = 32

// ProcTreesAsleep reports, of the process trees rooted at pids (at most 32 of them are
// looked at), how many are asleep: no thread of any process in the tree is running or waiting
// for a CPU (state R), or in an uninterruptible wait (state D, which is how a process waiting for a
// kernel lock such as RTNL looks). A chain whose plugins are all asleep is waiting on
// something outside the machine's CPUs: a server, a timer, address detection. It reads
// /proc; trees whose root has exited are not counted. ok is false when /proc cannot be read.
func ProcTreesAsleep(pids []int) (asleep, looked int, ok bool) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return 0, 0, false
	}
	for _, pid := range pids[:min(len(pids), maxTreesSampled)] {
		awake, exists := treeAwake(pid, 0)
		if !exists {
			continue
		}
		looked++
		if !awake {
			asleep++
		}
	}
	return asleep, looked, true
}

// treeAwake reports whether a process of the tree rooted at pid is running, runnable or in an
// uninterruptible wait, and whether pid exists.
func treeAwake(pid, depth int) (awake, exists bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return false, false
	}
	switch procState(b) {
	case 'R', 'D':
		return true, true
	}
	if depth >= 8 {
		return false, true
	}
	// Any thread may run (a Go plugin works on one thread while its main thread sleeps), and
	// a child may have been forked by any thread.
	tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
	for _, task := range tasks {
		if ts, err := os.ReadFile(filepath.Join(dir, "task", task.Name(), "stat")); err == nil {
			if st := procState(ts); st == 'R' || st == 'D' {
				return true, true
			}
		}
	}
	for _, task := range tasks {
		kids, err := os.ReadFile(filepath.Join(dir, "task", task.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range bytes.Fields(kids) {
			kid, err := strconv.Atoi(string(f))
			if err != nil {
				continue
			}
			if a, _ := treeAwake(kid, depth+1); a {
				return true, true
			}
		}
	}
	return false, true
}

// procState returns the state letter of a /proc/<pid>/stat line, which follows the command
// name in parentheses (a name that may itself hold parentheses and spaces).
func procState(stat []byte) byte {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}
