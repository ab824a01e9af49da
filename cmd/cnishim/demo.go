//go:build linux

package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/cnishim/cnishim/internal/lib/leakcheck"
	"github.com/cnishim/cnishim/internal/lib/netns"
	"github.com/cnishim/cnishim/internal/lib/nsrun"
	"github.com/cnishim/cnishim/internal/runtime/sandboxstore"
	"github.com/cnishim/cnishim/pkg/cninetwork"
	"github.com/cnishim/cnishim/pkg/confwatch"

	"github.com/vishvananda/netlink"
)

const demoSynopsis = `Runs the plugin on a built-in network and shows it working, with nothing to configure:
writes a bridge + host-local + portmap conflist (cniVersion 1.0.0, bridge cnishim-demo0, subnet
10.88.77.0/24) into a temporary conf dir, starts the plugin with a temporary cache and state
dir, creates the pods' network namespaces and sets up their networks, prints them, proves that
each pod reaches the next one over TCP from inside the namespaces and that the host reaches the
first pod through its host port, then tears everything down and checks that nothing is left:
no IP in the host-local store, no libcni cache entry, no netns mount, no veth, no portmap rule,
no bridge. Exits 0 when all of that holds. Traffic never leaves the machine.

With --keep the pods stay up for inspection and the command prints how to remove them
(cnishim demo --cleanup DIR). Needs root.`

const (
	demoBridge    = "cnishim-demo0"
	demoSubnet    = "10.88.77.0/24"
	demoNamespace = "cnishim-demo"
	demoPort      = 8080
	demoStateFile = "demo.json"
)

//go:embed demo.conflist.tmpl
var demoConflistTmpl string

// demoState is what a kept demo leaves in its directory for --cleanup.
type demoState struct {
	Bridge string    `json:"bridge"`
	Pods   []demoPod `json:"pods"`
}

type demoPod struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	NetNS    string `json:"netns"`
	IP       string `json:"ip,omitempty"`
	HostPort int32  `json:"hostPort,omitempty"`
}

type demo struct {
	out     io.Writer
	binDirs []string
	dir     string // everything the demo writes lives under it
	pods    int
	step    int
	plugin  *cninetwork.Plugin
	state   demoState
}

func (d *demo) confDir() string  { return filepath.Join(d.dir, "net.d") }
func (d *demo) cacheDir() string { return filepath.Join(d.dir, "cache") }
func (d *demo) netnsDir() string { return filepath.Join(d.dir, "netns") }
func (d *demo) ipamDir() string  { return filepath.Join(d.dir, "ipam") }

func (d *demo) progress(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "[%d] %s\n", d.step, fmt.Sprintf(format, args...))
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var binDirs, cleanup string
	var keep bool
	var pods int
	fs := newFlagSet("demo", stderr, demoSynopsis)
	fs.StringVar(&binDirs, "cni-bin-dir", defaultDemoBinDir(), "comma-separated directories holding the bridge, host-local and portmap plugins")
	fs.BoolVar(&keep, "keep", false, "leave the pods up for inspection; remove them later with --cleanup")
	fs.StringVar(&cleanup, "cleanup", "", "tear down a demo kept with --keep, given the directory it printed")
	fs.IntVar(&pods, "pods", 3, "number of pods, 2 to 200")
	logs := addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if pods < 2 || pods > 200 {
		return fmt.Errorf("%w: --pods %d: want 2 to 200", errUsage, pods)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces, a bridge and veths (try sudo, or make demo as root)")
	}
	ctx = logs.context(ctx)
	d := &demo{out: stdout, binDirs: splitList(binDirs), pods: pods}
	if cleanup != "" {
		return d.cleanup(ctx, cleanup)
	}
	return d.run(ctx, keep)
}

// defaultDemoBinDir is the plugin directory hack/install-cni-plugins.sh fills, found next to
// the cnishim binary (_output/bin/cnishim -> _output/cni/bin) or under the working directory,
// else /opt/cni/bin.
func defaultDemoBinDir() string {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "cni", "bin"))
	}
	if wd, err := os.Getwd(); err == nil {
		candidates = append(candidates, filepath.Join(wd, "_output", "cni", "bin"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(filepath.Join(c, "bridge")); err == nil && fi.Mode().IsRegular() {
			return filepath.Clean(c)
		}
	}
	return confwatch.DefaultBinDir
}

func (d *demo) run(ctx context.Context, keep bool) (retErr error) {
	if err := d.checkPrerequisites(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cnishim-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	d.state.Bridge = demoBridge
	defer func() {
		if retErr == nil && keep {
			return
		}
		if retErr != nil {
			// Clean up whatever was made, under a fresh context: ctx may be why we failed.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if err := d.teardown(cctx); err != nil {
				fmt.Fprintf(d.out, "cleanup after the failure: %v\n", err)
				fmt.Fprintf(d.out, "remove the rest with: cnishim demo --cleanup %s\n", d.dir)
				return
			}
			_ = deleteBridge(demoBridge)
			_ = os.RemoveAll(d.dir)
		}
	}()

	conf, err := d.writeConfig()
	if err != nil {
		return err
	}
	d.progress("Wrote the built-in network config %s (bridge %s, subnet %s, host-local store %s)", conf, demoBridge, demoSubnet, d.ipamDir())

	if err := d.startPlugin(ctx); err != nil {
		return err
	}
	def := d.plugin.Snapshot().Default
	d.progress("Plugin ready: default network %q, plugins %s, cniVersion %s", def.Name, strings.Join(def.PluginTypes, " -> "), def.CNIVersion)

	hostPort, err := freeHostPort()
	if err != nil {
		return err
	}
	for i := range d.pods {
		p, err := d.setUpPod(ctx, i, hostPort)
		if err != nil {
			return err
		}
		extra := ""
		if p.HostPort != 0 {
			extra = fmt.Sprintf(", host port %d -> %d", p.HostPort, demoPort)
		}
		d.progress("Pod %s/%s: netns %s, IP %s%s", demoNamespace, p.Name, p.NetNS, p.IP, extra)
	}
	d.printTable(def.Name)

	if err := d.proveConnectivity(ctx); err != nil {
		return err
	}

	if keep {
		d.printKept()
		return d.stopPlugin()
	}
	if err := d.teardown(ctx); err != nil {
		return err
	}
	if err := d.verifyClean(); err != nil {
		return err
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	d.progress("Removed %s", d.dir)
	fmt.Fprintf(d.out, "\nDemo passed: %d pods set up, reached each other and the host port, and left nothing behind.\n", d.pods)
	return nil
}

func (d *demo) checkPrerequisites() error {
	var missing []string
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		found := false
		for _, dir := range d.binDirs {
			if fi, err := os.Stat(filepath.Join(dir, p)); err == nil && fi.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("CNI plugins %s not found in %s: install them with hack/install-cni-plugins.sh (make demo does) or pass --cni-bin-dir",
			strings.Join(missing, ", "), strings.Join(d.binDirs, ", "))
	}
	if _, err := netlink.LinkByName(demoBridge); err == nil {
		return fmt.Errorf("bridge %s already exists: another demo is running, or one was kept with --keep "+
			"(remove it with cnishim demo --cleanup DIR, or ip link del %s)", demoBridge, demoBridge)
	}
	_, subnet, _ := net.ParseCIDR(demoSubnet)
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if subnet.Contains(a.IP) || a.IPNet.Contains(subnet.IP) {
			return fmt.Errorf("the demo subnet %s overlaps the host address %s: the demo would disturb this machine's network", demoSubnet, a.IPNet)
		}
	}
	return nil
}

func (d *demo) writeConfig() (string, error) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	t := template.Must(template.New("conflist").Parse(demoConflistTmpl))
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]string{"Bridge": q(demoBridge), "Subnet": q(demoSubnet), "DataDir": q(d.ipamDir())}); err != nil {
		return "", err
	}
	for _, dir := range []string{d.confDir(), d.cacheDir(), d.ipamDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
	}
	path := filepath.Join(d.confDir(), "10-cnishim-demo.conflist")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	return path, d.saveState()
}

func (d *demo) saveState() error {
	b, err := json.MarshalIndent(d.state, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.dir, demoStateFile), b, 0o600)
}

func (d *demo) startPlugin(ctx context.Context) error {
	p, err := cninetwork.New(
		cninetwork.WithConfDir(d.confDir()),
		cninetwork.WithBinDirs(d.binDirs...),
		cninetwork.WithCacheDir(d.cacheDir()),
	)
	if err != nil {
		return err
	}
	if err := p.Run(ctx); err != nil {
		return fmt.Errorf("start the plugin: %w", err)
	}
	d.plugin = p
	if err := p.Status(ctx); err != nil {
		return fmt.Errorf("the plugin is not ready on the built-in config: %w", err)
	}
	return nil
}

func (d *demo) stopPlugin() error {
	if d.plugin == nil {
		return nil
	}
	err := d.plugin.Close()
	d.plugin = nil
	return err
}

// setUpPod creates pod i's namespace and sets up its network; the first pod gets the host port.
func (d *demo) setUpPod(ctx context.Context, i int, hostPort int32) (demoPod, error) {
	p := demoPod{Name: fmt.Sprintf("demo-%d", i+1), ID: sandboxstore.NewID()}
	var ports []cninetwork.PortMapping
	if i == 0 {
		p.HostPort = hostPort
		ports = []cninetwork.PortMapping{{Protocol: "tcp", ContainerPort: demoPort, HostPort: hostPort}}
	}
	path, err := netns.Create(d.netnsDir(), p.ID)
	if err != nil {
		return p, err
	}
	p.NetNS = path
	d.state.Pods = append(d.state.Pods, p) // recorded before set-up, so teardown covers it
	if err := d.saveState(); err != nil {
		return p, err
	}
	st, err := d.plugin.SetUpPod(ctx, &cninetwork.Pod{
		SandboxID: p.ID, Name: p.Name, Namespace: demoNamespace, UID: sandboxstore.NewID()[:32],
		NetNS: path, PortMappings: ports,
	})
	if err != nil {
		return p, fmt.Errorf("set up pod %s: %w", p.Name, err)
	}
	if len(st.IPs) == 0 {
		return p, fmt.Errorf("set up pod %s: the network gave no IP", p.Name)
	}
	p.IP = st.IPs[0].String()
	d.state.Pods[len(d.state.Pods)-1] = p
	return p, d.saveState()
}

func (d *demo) printTable(network string) {
	fmt.Fprintln(d.out)
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSANDBOX ID\tIP\tNETWORK")
	for _, p := range d.state.Pods {
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\n", demoNamespace, p.Name, p.ID[:13], p.IP, network)
	}
	_ = tw.Flush()
	fmt.Fprintln(d.out)
}

// proveConnectivity opens a TCP listener inside each pod's namespace, then from inside each
// pod's namespace connects to the next pod; and from the host connects to the first pod's host
// port on the bridge's gateway address.
func (d *demo) proveConnectivity(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, p := range d.state.Pods {
		l, err := nsrun.ListenTCP(p.NetNS, net.JoinHostPort("0.0.0.0", fmt.Sprint(demoPort)))
		if err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		defer l.Close()
		go nsrun.Greet(l, "hello from "+p.Name)
	}
	n := len(d.state.Pods)
	for i, from := range d.state.Pods {
		to := d.state.Pods[(i+1)%n]
		addr := net.JoinHostPort(to.IP, fmt.Sprint(demoPort))
		got, err := nsrun.Fetch(ctx, from.NetNS, addr)
		if err != nil {
			return fmt.Errorf("pod %s cannot reach pod %s: %w", from.Name, to.Name, err)
		}
		if want := "hello from " + to.Name; got != want {
			return fmt.Errorf("pod %s reached %s but read %q, want %q", from.Name, addr, got, want)
		}
		d.progress("Pod %s -> pod %s at %s over TCP, from inside %s's netns: %q", from.Name, to.Name, addr, from.Name, got)
	}
	first := d.state.Pods[0]
	gw, err := gatewayAddr(demoBridge)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(gw, fmt.Sprint(first.HostPort))
	got, err := nsrun.Fetch(ctx, "", addr)
	if err != nil {
		return fmt.Errorf("host cannot reach pod %s through host port %d: %w", first.Name, first.HostPort, err)
	}
	if want := "hello from " + first.Name; got != want {
		return fmt.Errorf("host port %s answered %q, want %q", addr, got, want)
	}
	d.progress("Host -> %s (host port) -> pod %s port %d via portmap: %q", addr, first.Name, demoPort, got)
	return nil
}

// gatewayAddr returns the bridge's IPv4 address, the pods' gateway.
func gatewayAddr(bridge string) (string, error) {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return "", fmt.Errorf("bridge %s: %w", bridge, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return "", fmt.Errorf("bridge %s has no IPv4 address (%v)", bridge, err)
	}
	return addrs[0].IP.String(), nil
}

// freeHostPort returns a TCP port nothing on the host listens on right now.
func freeHostPort() (int32, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port), nil
}

func (d *demo) printKept() {
	fmt.Fprintf(d.out, "\nThe pods stay up (--keep). Everything is under %s:\n", d.dir)
	fmt.Fprintf(d.out, "  config   %s\n  cache    %s\n  IPs      %s\n  netns    %s\n", d.confDir(), d.cacheDir(), d.ipamDir(), d.netnsDir())
	fmt.Fprintf(d.out, "Look inside a pod:   nsenter --net=%s ip addr\n", d.state.Pods[0].NetNS)
	fmt.Fprintf(d.out, "Remove everything:   cnishim demo --cleanup %s\n", d.dir)
}

// teardown tears down every pod the state lists, removes their namespaces and stops the plugin.
func (d *demo) teardown(ctx context.Context) error {
	if d.plugin == nil && len(d.state.Pods) > 0 {
		if err := d.startPlugin(ctx); err != nil {
			return err
		}
	}
	var errs []error
	for _, p := range d.state.Pods {
		if err := d.plugin.TearDownPod(ctx, &cninetwork.Pod{SandboxID: p.ID, Name: p.Name, Namespace: demoNamespace, NetNS: p.NetNS}); err != nil {
			errs = append(errs, fmt.Errorf("tear down pod %s: %w", p.Name, err))
			continue
		}
		if err := netns.Remove(p.NetNS); err != nil {
			errs = append(errs, err)
			continue
		}
		d.progress("Tore down pod %s/%s and removed its netns", demoNamespace, p.Name)
	}
	if err := d.stopPlugin(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// verifyClean checks that nothing the pods had is left, then removes the bridge (the bridge
// plugin leaves it) and checks it is gone.
func (d *demo) verifyClean() error {
	var needles []string
	for _, p := range d.state.Pods {
		needles = append(needles, p.ID)
	}
	st := leakcheck.Take(leakcheck.Scope{
		HostLocalDirs: []string{d.ipamDir()},
		CacheDir:      d.cacheDir(),
		NetnsDir:      d.netnsDir(),
		RuleNeedles:   needles,
	})
	var leaks []string
	for _, ip := range st.IPs {
		leaks = append(leaks, "host-local IP "+ip)
	}
	for _, c := range st.Cache {
		leaks = append(leaks, "libcni cache entry "+c)
	}
	for _, n := range st.Netns {
		leaks = append(leaks, "netns mount "+n)
	}
	for _, r := range st.Rules {
		leaks = append(leaks, "rule "+r)
	}
	for _, p := range st.Problems {
		leaks = append(leaks, "could not check: "+p)
	}
	ports, err := leakcheck.BridgePorts(demoBridge)
	if err != nil {
		leaks = append(leaks, "could not check: "+err.Error())
	}
	for _, v := range ports {
		leaks = append(leaks, "veth on "+demoBridge+": "+v)
	}
	if len(leaks) > 0 {
		return fmt.Errorf("left behind after teardown:\n  %s", strings.Join(leaks, "\n  "))
	}
	d.progress("Checked: no IP in the host-local store, no libcni cache entry, no netns mount, no veth on %s, no portmap rule for the pods", demoBridge)
	if err := deleteBridge(demoBridge); err != nil {
		return err
	}
	if _, err := netlink.LinkByName(demoBridge); err == nil {
		return fmt.Errorf("bridge %s still exists after deletion", demoBridge)
	}
	d.progress("Removed bridge %s (the bridge plugin leaves it)", demoBridge)
	return nil
}

func deleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// cleanup removes a demo kept with --keep.
func (d *demo) cleanup(ctx context.Context, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, demoStateFile))
	if err != nil {
		return fmt.Errorf("%s is not a kept demo: %w", dir, err)
	}
	if err := json.Unmarshal(b, &d.state); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, demoStateFile), err)
	}
	if d.state.Bridge != demoBridge {
		return fmt.Errorf("%s: unexpected bridge %q", filepath.Join(dir, demoStateFile), d.state.Bridge)
	}
	d.dir = dir
	if err := d.teardown(ctx); err != nil {
		return err
	}
	if err := d.verifyClean(); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	d.progress("Removed %s", dir)
	fmt.Fprintf(d.out, "\nDemo removed; nothing left behind.\n")
	return nil
}
