// Command netexec answers each TCP connection and each UDP datagram with one line,
// "<name> <peer address it saw>", so that a test learns which pod answered and whether the
// client's address reached it unchanged (no SNAT). It prints "listening" on stdout once its
// sockets are open. With --dial it is the client instead: it sends one request to an address
// and prints the answer.
//
// Usage:
//
//	netexec --name NAME [--tcp :8080] [--udp :8080]   (an empty address turns that protocol off)
//	netexec --dial tcp|udp --addr HOST:PORT
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "", "name to answer with (required to serve)")
	tcpAddr := flag.String("tcp", ":8080", "TCP address to listen on; empty: none")
	udpAddr := flag.String("udp", ":8080", "UDP address to listen on; empty: none")
	dial := flag.String("dial", "", "client mode: tcp or udp (tcp4, udp6... too)")
	addr := flag.String("addr", "", "client mode: the server's address")
	timeout := flag.Duration("timeout", 10*time.Second, "client mode: give up after this")
	flag.Parse()
	var err error
	if *dial != "" {
		err = client(*dial, *addr, *timeout)
	} else {
		err = serve(*name, *tcpAddr, *udpAddr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netexec: %v\n", err)
		os.Exit(1)
	}
}

func serve(name, tcpAddr, udpAddr string) error {
	if name == "" {
		return errors.New("--name is required")
	}
	if tcpAddr != "" {
		l, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					fmt.Fprintf(os.Stderr, "netexec: accept: %v\n", err)
					return
				}
				fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
				_ = c.Close()
			}
		}()
	}
	if udpAddr != "" {
		pc, err := net.ListenPacket("udp", udpAddr)
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 65536)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					fmt.Fprintf(os.Stderr, "netexec: read: %v\n", err)
					return
				}
				_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from), from)
			}
		}()
	}
	fmt.Println("listening")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return nil
}

func client(proto, addr string, timeout time.Duration) error {
	c, err := net.DialTimeout(proto, addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	// Over TCP the server speaks first; a datagram asks.
	if _, ok := c.(*net.UDPConn); ok {
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	fmt.Print(line)
	return nil
}
