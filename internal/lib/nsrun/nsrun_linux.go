//go:build linux

// Package nsrun opens TCP listeners and connections inside a network namespace without exec,
// on netns.Do's locked thread. Sockets keep the namespace they were created in, so a listener or
// connection made by ListenTCP or DialTCP can be used from any goroutine afterwards.
package nsrun

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/cnishim/cnishim/internal/lib/netns"
)

// ListenTCP opens a TCP listener on addr (an IP literal and port) inside the namespace at path.
func ListenTCP(path, addr string) (net.Listener, error) {
	var l net.Listener
	err := netns.Do(path, func() (err error) {
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
	err := netns.Do(path, func() (err error) {
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
