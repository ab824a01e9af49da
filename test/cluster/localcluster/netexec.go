//go:build linux

package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cnishim/cnishim/internal/lib/netns"
)

// Dial asks the netexec server at addr over proto ("tcp" or "udp", or a family-specific form
// such as "udp6") from inside the network namespace at netnsPath, and returns the server's name
// and the peer address it saw. Over UDP the request is sent again every second until an answer
// comes or ctx is done; over TCP there is one try, bounded by ctx.
func Dial(ctx context.Context, netnsPath, proto, addr string) (name, peer string, err error) {
	var c net.Conn
	err = netns.Do(netnsPath, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, proto, addr)
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("dial %s %s from netns %s: %w", proto, addr, netnsPath, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var line string
	if _, ok := c.(*net.UDPConn); ok {
		line, err = askUDP(ctx, c)
	} else {
		line, err = bufio.NewReader(c).ReadString('\n')
	}
	if err != nil {
		return "", "", fmt.Errorf("%s %s from netns %s: %w", proto, addr, netnsPath, err)
	}
	name, peer, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok {
		return "", "", fmt.Errorf("%s %s from netns %s: answer %q is not \"<name> <peer>\"", proto, addr, netnsPath, line)
	}
	return name, peer, nil
}

func askUDP(ctx context.Context, c net.Conn) (string, error) {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if ctx.Err() != nil {
			return "", errors.Join(err, ctx.Err())
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
}

// Netexec is a netexec server running inside a network namespace.
type Netexec struct {
	p *process
}

// StartNetexec starts the netexec binary bin inside the network namespace at netnsPath as
// `netexec --name name args...` and returns once it listens. Its stderr goes to stderr. The
// caller stops it with Stop.
func StartNetexec(ctx context.Context, bin, netnsPath, name string, args ...string) (*Netexec, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsPath, bin, "--name", name}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("netexec %s in %s: %w", name, netnsPath, err)
	}
	s := &Netexec{p: p}
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lines <- l
	}()
	select {
	case l := <-lines:
		if strings.TrimSpace(l) == "listening" {
			return s, nil
		}
		err = fmt.Errorf("netexec %s in %s: did not start (said %q)", name, netnsPath, l)
	case <-ctx.Done():
		err = fmt.Errorf("netexec %s in %s: %w", name, netnsPath, ctx.Err())
	}
	return nil, errors.Join(err, s.Stop())
}

// PID is the server's process ID.
func (s *Netexec) PID() int { return s.p.PID }

// Stop kills the server and waits until it has exited.
func (s *Netexec) Stop() error { return s.p.kill() }

// BuildNetexec builds the netexec command (test/cluster/netexec of this module) into dst.
func BuildNetexec(ctx context.Context, dst string) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, "./test/cluster/netexec")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./test/cluster/netexec: %w\n%s", err, out)
	}
	return nil
}
