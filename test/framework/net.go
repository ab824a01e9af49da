//go:build linux

package framework

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
)

// Slots hands out numbers that tell a test's bridge names, subnets and ports from those of
// every other test of the run and, as far as Procs allows, of other processes running the same
// tests on the machine: (pid % Procs) * Per + (n % Per) for the n-th call.
type Slots struct {
	Procs, Per int
	seq        atomic.Int32
}

// Next returns the next number.
func (s *Slots) Next() int {
	n := int(s.seq.Add(1))
	return ProcessSlot(s.Procs)*s.Per + n%s.Per
}

// ProcessSlot returns a number in [0, n) that tells this test process from others running the
// same tests on the machine at the same time.
func ProcessSlot(n int) int { return os.Getpid() % n }

// Net is a test's own network: a bridge name and an IPv4 subnet no other test uses, and a
// host-local store in a temp dir. Its conflist is bridge + host-local + portmap.
type Net struct {
	Name    string
	Bridge  string
	Subnet  *net.IPNet
	IPAMDir string // host-local dataDir

	CNIVersion string // of Conflist; "" is 1.0.0
	DisableGC  bool   // Conflist's disableGC
}

// NewNet returns a network on bridge and subnet (a CIDR). It fails the test if the bridge
// exists already, and deletes the bridge at cleanup.
func NewNet(t testing.TB, name, bridge, subnet string) *Net {
	t.Helper()
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	CheckNoBridge(t, bridge)
	t.Cleanup(func() { DeleteBridge(t, bridge) })
	return &Net{Name: name, Bridge: bridge, Subnet: ipnet, IPAMDir: t.TempDir()}
}

// BridgePlugin is the JSON of the bridge plugin on n's bridge with host-local IPAM on its subnet.
func (n *Net) BridgePlugin() string {
	return fmt.Sprintf(`{
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}
    }`, n.Bridge, n.IPAMDir, n.Subnet.String())
}

// PortmapPlugin is the JSON of the portmap plugin with its portMappings capability.
const PortmapPlugin = `{"type": "portmap", "capabilities": {"portMappings": true}}`

// Conflist is n as a bridge + host-local + portmap network list, of n.CNIVersion.
func (n *Net) Conflist() string {
	return fmt.Sprintf(`{
  "cniVersion": %q,
  "name": %q,
  "disableGC": %t,
  "plugins": [
    %s,
    %s
  ]
}
`, cmp.Or(n.CNIVersion, "1.0.0"), n.Name, n.DisableGC, n.BridgePlugin(), PortmapPlugin)
}

// Gateway is the bridge's address, the host's address on the network.
func (n *Net) Gateway() net.IP {
	ip := slices.Clone(n.Subnet.IP.To4())
	ip[3] = 1
	return ip
}

// Conflist returns a network list of the given plugins' JSON.
func Conflist(cniVersion, name string, plugins ...string) string {
	return fmt.Sprintf(`{"cniVersion": %q, "name": %q, "plugins": [%s]}`, cniVersion, name, strings.Join(plugins, ",\n"))
}

// WriteFileAtomic writes a file into dir by rename, so that no watcher sees it half-written.
func WriteFileAtomic(t testing.TB, dir, file, body string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

// CheckNoBridge fails the test if a bridge of that name exists: another run of these tests is
// going on, or one left it behind.
func CheckNoBridge(t testing.TB, name string) {
	t.Helper()
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("bridge %s already exists: another run of these tests is going on, or one left it behind", name)
	}
}

// DeleteBridge removes a bridge if it exists.
func DeleteBridge(t testing.TB, name string) {
	t.Helper()
	if l, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Errorf("delete bridge %s: %v", name, err)
		}
	}
}

// BridgePorts lists the interfaces enslaved to the bridge (none if it does not exist), failing
// the test if they cannot be read.
func BridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	ports, err := leakcheck.BridgePorts(bridge)
	if err != nil {
		t.Errorf("%v", err)
	}
	return ports
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that nothing listens on right now.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		// Held until all are taken, so that the kernel hands out n different ones.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// HTTPGet fetches url from the test's network namespace and returns the body of a 200 answer;
// it tries three times, 300 ms apart, each bounded by 5 s.
func HTTPGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var last error
	for range 3 {
		resp, err := client.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			last = fmt.Errorf("GET %s: %s %v", url, resp.Status, err)
		} else {
			last = err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return "", last
}
