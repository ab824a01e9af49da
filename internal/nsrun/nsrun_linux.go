//go:build linux

// Package nsrun runs code inside a network namespace without exec: on a locked OS thread that
// joins the namespace and leaves it before it is unlocked, so no other goroutine ever runs there.
// Sockets keep the namespace they were created in, so a listener or connection made by
// ListenTCP or DialTCP can be used from any goroutine afterwards.
package nsrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread inside the network namespace at path (a bind mount or an nsfs
// file) and returns its error. fn must do its namespace-bound work (creating sockets, netlink
// calls) on its own goroutine: goroutines it starts run in the caller's namespace. Do blocks
// until fn returns.
func Do(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread switches back before it is unlocked. Only a thread that cannot switch back
		// is thrown away (its goroutine exits still locked): Go cannot end the process's main
		// thread, it parks it for good, and a thread parked in the namespace would keep it
		// alive after it is removed.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: current namespace: %w", path, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: setns: %w", path, err)
			return
		}
		err = fn()
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("netns %s: switch back: %w", path, serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// ListenTCP opens a TCP listener on addr (an IP literal and port) inside the namespace at path.
func ListenTCP(path, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(path, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s in netns %s: %w", addr, path, err)
	}
	return l, nil
}

// DialTCP connects to addr (an IP literal and port; a name would be resolved outside the
// namespace) from inside the namespace at path.
func DialTCP(ctx context.Context, path, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(path, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from netns %s: %w", addr, path, err)
	}
	return c, nil
}

// Greet accepts connections on l until l is closed, writes greeting to each and closes it.
// Run it in its own goroutine; it returns once l is closed.
func Greet(l net.Listener, greeting string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte(greeting))
		_ = c.Close()
	}
}

// Fetch connects to addr from inside the namespace at path, or from the caller's namespace if
// path is empty, and returns all the peer wrote before it closed the connection.
func Fetch(ctx context.Context, path, addr string) (string, error) {
	var c net.Conn
	var err error
	if path == "" {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
	} else {
		c, err = DialTCP(ctx, path, addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return string(b), nil
}
