//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnishim/cnishim/internal/lib/nsrun"
)

// podStats is the part of `crictl statsp -o json` the tests read.
type podStats struct {
	Stats []struct {
		Attributes struct {
			ID       string `json:"id"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"attributes"`
		Linux *struct {
			Network *struct {
				Timestamp        string          `json:"timestamp"`
				DefaultInterface *interfaceStat  `json:"defaultInterface"`
				Interfaces       []interfaceStat `json:"interfaces"`
			} `json:"network"`
		} `json:"linux"`
	} `json:"stats"`
}

type interfaceStat struct {
	Name    string `json:"name"`
	RxBytes *struct {
		Value string `json:"value"`
	} `json:"rxBytes"`
}

// rxBytes runs crictl statsp -o json for the sandbox and returns the bytes its default
// interface received.
func (s *server) rxBytes(id string) uint64 {
	s.T.Helper()
	out := s.MustCrictl("statsp", "-o", "json", "--id", id)
	var ps podStats
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		s.T.Fatalf("crictl statsp: %v\n%s", err, out)
	}
	if len(ps.Stats) != 1 || ps.Stats[0].Attributes.ID != id || ps.Stats[0].Linux == nil || ps.Stats[0].Linux.Network == nil {
		s.T.Fatalf("crictl statsp --id %s: want network stats of that sandbox alone, got:\n%s", id, out)
	}
	def := ps.Stats[0].Linux.Network.DefaultInterface
	if def == nil || def.Name != "eth0" || def.RxBytes == nil {
		s.T.Fatalf("crictl statsp --id %s: want eth0 with rx bytes as the default interface, got:\n%s", id, out)
	}
	n, err := strconv.ParseUint(def.RxBytes.Value, 10, 64)
	if err != nil {
		s.T.Fatalf("crictl statsp --id %s: rx bytes %q: %v", id, def.RxBytes.Value, err)
	}
	return n
}

// The read-only crictl commands a sandbox-only runtime can answer succeed, inspect of a
// container says there is none, and statsp shows the bytes the host sent into a pod.
func TestCRIReadOnlyCommands(t *testing.T) {
	s := readyServer(t, "e2e-readonly")
	id := s.Runp(podSpec{Name: "sink"})
	t.Cleanup(func() { s.MustCrictl("rmp", "-f", id) })

	for _, args := range [][]string{{"ps", "-a"}, {"images"}, {"imagefsinfo"}, {"statsp"}} {
		t.Run(args[0], func(t *testing.T) {
			// A hang guard only: a correct server answers at once.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if _, err := s.CrictlCtx(ctx, args...); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("inspect", func(t *testing.T) {
		_, err := s.Crictl("inspect", "0123456789ab")
		if err == nil || !strings.Contains(err.Error(), "NotFound") || !strings.Contains(err.Error(), "has no containers") {
			t.Fatalf("crictl inspect of a container = %v, want NotFound saying there are no containers", err)
		}
	})

	t.Run("statsp counts traffic", func(t *testing.T) {
		ip := s.PodIP(id)
		before := s.rxBytes(id)
		const size = 256 << 10
		received := sink(t, s.Inspectp(id).Info.NetNSPath, net.JoinHostPort(ip.String(), fmt.Sprint(containerPort)))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), fmt.Sprint(containerPort)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		select {
		case n := <-received:
			if n != size {
				t.Fatalf("the pod received %d bytes, want %d", n, size)
			}
		case <-ctx.Done():
			t.Fatal("the pod did not receive the bytes")
		}
		if after := s.rxBytes(id); after < before+size {
			t.Fatalf("statsp rx bytes of eth0 went from %d to %d after the pod received %d bytes", before, after, size)
		}
	})
}

// sink listens on addr inside the netns at path, reads one connection to its end and sends the
// number of bytes read.
func sink(t *testing.T, netnsPath, addr string) <-chan int64 {
	t.Helper()
	l, err := nsrun.ListenTCP(netnsPath, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	out := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			out <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		out <- n
	}()
	return out
}
