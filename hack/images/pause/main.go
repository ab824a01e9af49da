// Command pause is the pause image's /pause, built by hack/images: it does what the Kubernetes
// pause binary (build/pause/linux/pause.c) does. It sleeps until SIGINT or SIGTERM, on which it
// exits 0, and as PID 1 of a pod's PID namespace it reaps every child that is re-parented to it.
//
// Usage: /pause [-v]
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause.go (hack/images stand-in for pause.c)")
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %s\n", s)
			os.Exit(0)
		}
		// Signals coalesce: one SIGCHLD may stand for several exited children.
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
