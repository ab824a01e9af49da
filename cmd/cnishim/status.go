//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cnishim/cnishim/internal/runtime/criserver"
	"github.com/cnishim/cnishim/pkg/confwatch"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const statusSynopsis = `Reads the CNI configuration directory the way the server does and reports whether the node's
network is ready, the chosen network (file, name, cniVersion, plugin chain, capabilities), every
other valid network, every skipped file with the reason, and warnings for configuration or plugin
files and directories that users other than root can change. It needs no server; when one is
listening on --listen it also shows the server's view: readiness, sandboxes, and the admission
bounds and queues. Exits 1 when the network is not ready.`

// statusReport is what cnishim status prints; -o json prints it as is.
type statusReport struct {
	Ready       bool                    `json:"ready"`
	Reason      string                  `json:"reason,omitempty"`
	ConfDir     string                  `json:"confDir"`
	BinDirs     []string                `json:"binDirs"`
	NetworkName string                  `json:"networkName,omitempty"`
	Default     *criserver.NetworkInfo  `json:"default,omitempty"`
	Networks    []criserver.NetworkInfo `json:"networks"`
	// Selectable names the networks a pod may select with the k8s.v1.cni.cncf.io/networks
	// annotation: every valid network, by name (a name in several files means the first).
	Selectable []string      `json:"selectableNetworks"`
	Skipped    []skippedInfo `json:"skipped"`
	Warnings   []string      `json:"warnings"`
	Server     *serverReport `json:"server,omitempty"`
}

type skippedInfo struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// serverReport is the running server's view.
type serverReport struct {
	Endpoint      string         `json:"endpoint"`
	Reachable     bool           `json:"reachable"`
	Error         string         `json:"error,omitempty"`
	Version       string         `json:"version,omitempty"`
	NetworkReady  bool           `json:"networkReady"`
	NetworkReason string         `json:"networkReason,omitempty"`
	Sandboxes     map[string]int `json:"sandboxes,omitempty"`
	Admission     *admissionInfo `json:"admission,omitempty"`
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cni cniFlags
	var output, listen string
	fs := newFlagSet("status", stderr, statusSynopsis)
	cni.register(fs, false)
	fs.StringVar(&output, "o", "text", "output format: text or json")
	fs.StringVar(&listen, "listen", defaultListen, "CRI endpoint of a running server to ask as well")
	logs := addLogFlags(fs, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if output != "text" && output != "json" {
		return fmt.Errorf("%w: -o %q: want text or json", errUsage, output)
	}
	ctx = logs.context(ctx)

	w, err := confwatch.New(cni.confDir, cni.watcherOptions()...)
	if err != nil {
		return err
	}
	snap := w.Scan(ctx)
	rep := buildReport(snap, &cni)
	if sock, err := unixPath(listen); err == nil {
		rep.Server = queryServer(ctx, sock)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep)
	}
	if !rep.Ready {
		return errNotReady
	}
	return nil
}

func buildReport(snap *confwatch.Snapshot, cni *cniFlags) *statusReport {
	rep := &statusReport{
		Ready:       snap.Default != nil,
		ConfDir:     cni.confDir,
		BinDirs:     cni.binDirList(),
		NetworkName: cni.networkName,
		Networks:    []criserver.NetworkInfo{},
		Selectable:  criserver.SelectableNetworks(snap),
		Skipped:     []skippedInfo{},
		Warnings:    []string{},
	}
	if snap.Err != nil {
		rep.Reason = snap.Err.Error()
	}
	if snap.Default != nil {
		d := criserver.NetworkInfoOf(snap.Default)
		rep.Default = &d
	}
	var files []string
	for _, n := range snap.Networks {
		rep.Networks = append(rep.Networks, criserver.NetworkInfoOf(n))
		files = append(files, n.File)
	}
	for _, s := range snap.Skipped {
		rep.Skipped = append(rep.Skipped, skippedInfo{File: s.File, Reason: fmt.Sprint(s.Reason)})
		files = append(files, s.File)
	}
	rep.Warnings = permissionWarnings(cni.confDir, files, rep.BinDirs)
	return rep
}

// permissionWarnings reports configuration and plugin paths that a user other than root can
// change: a file or directory owned by another user, or writable by group or others. Such a
// user could make the runtime exec a binary of their choosing as root. The ancestors of each
// directory are checked too; a world-writable ancestor with the sticky bit (like /tmp) is fine.
func permissionWarnings(confDir string, confFiles, binDirs []string) []string {
	warns := []string{} // [] in JSON when there are none
	seen := map[string]bool{}
	check := func(path, what string) {
		if seen[path] {
			return
		}
		seen[path] = true
		if w := unsafePerm(path, what, false); w != "" {
			warns = append(warns, w)
		}
	}
	checkAncestors := func(dir string) {
		for d := filepath.Dir(filepath.Clean(dir)); ; d = filepath.Dir(d) {
			if !seen[d] {
				seen[d] = true
				if w := unsafePerm(d, "directory above a CNI directory", true); w != "" {
					warns = append(warns, w)
				}
			}
			if d == "/" || d == "." {
				return
			}
		}
	}
	if abs, err := filepath.Abs(confDir); err == nil {
		confDir = abs
	}
	check(confDir, "CNI config directory")
	checkAncestors(confDir)
	for _, f := range confFiles {
		check(f, "CNI config file")
	}
	for _, d := range binDirs {
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		check(d, "CNI plugin directory")
		checkAncestors(d)
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				check(filepath.Join(d, e.Name()), "CNI plugin")
			}
		}
	}
	slices.Sort(warns)
	return warns
}

// unsafePerm says why path is unsafe, or "". A sticky world-writable directory is accepted when
// stickyOK (an ancestor: others cannot replace what is in it), not for a CNI directory itself
// (others could add files to it).
func unsafePerm(path, what string, stickyOK bool) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	var why []string
	if st.Uid != 0 {
		why = append(why, fmt.Sprintf("owned by uid %d", st.Uid))
	}
	mode := fi.Mode()
	if mode.Perm()&0o022 != 0 && !(stickyOK && fi.IsDir() && mode&os.ModeSticky != 0) {
		why = append(why, fmt.Sprintf("writable by group or others (mode %04o)", mode.Perm()))
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s is %s: a non-root user could change what runs as root", what, path, strings.Join(why, " and "))
}

// queryServer asks a running server for its status, sandboxes and admission state.
func queryServer(ctx context.Context, sock string) *serverReport {
	rep := &serverReport{Endpoint: "unix://" + sock}
	if _, err := os.Stat(sock); err != nil {
		rep.Error = "no server: " + err.Error()
		return rep
	}
	conn, err := dialServer(sock)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Reachable = true
	rep.Version = v.GetRuntimeName() + " " + v.GetRuntimeVersion()
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	for _, c := range st.GetStatus().GetConditions() {
		if c.GetType() == runtimeapi.NetworkReady {
			rep.NetworkReady = c.GetStatus()
			rep.NetworkReason = c.GetMessage()
		}
	}
	if a, ok := st.GetInfo()["admission"]; ok {
		var ai admissionInfo
		if err := json.Unmarshal([]byte(a), &ai); err == nil {
			rep.Admission = &ai
		}
	}
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Sandboxes = map[string]int{"ready": 0, "notready": 0}
	for _, it := range list.GetItems() {
		if it.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			rep.Sandboxes["ready"]++
		} else {
			rep.Sandboxes["notready"]++
		}
	}
	return rep
}

func printReport(w io.Writer, r *statusReport) {
	if r.Ready {
		fmt.Fprintf(w, "Network: ready\n")
	} else {
		fmt.Fprintf(w, "Network: NOT READY: %s\n", r.Reason)
	}
	fmt.Fprintf(w, "Config dir: %s\n", r.ConfDir)
	fmt.Fprintf(w, "Plugin dirs: %s\n", strings.Join(r.BinDirs, ", "))
	if r.NetworkName != "" {
		fmt.Fprintf(w, "Pinned network: %s\n", r.NetworkName)
	}
	if r.Default != nil {
		fmt.Fprintf(w, "\nDefault network: %s\n", r.Default.Name)
		printNetwork(w, "  ", *r.Default)
	}
	var others []criserver.NetworkInfo
	for _, n := range r.Networks {
		if r.Default == nil || n.File != r.Default.File {
			others = append(others, n)
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "\nOther valid networks:\n")
		for _, n := range others {
			fmt.Fprintf(w, "  %s\n", n.Name)
			printNetwork(w, "    ", n)
		}
	}
	if len(r.Selectable) > 0 {
		fmt.Fprintf(w, "\nNetworks pods may select (k8s.v1.cni.cncf.io/networks): %s\n", strings.Join(r.Selectable, ", "))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped files:\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  %s: %s\n", s.File, s.Reason)
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings:\n")
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "\nServer %s: ", s.Endpoint)
		if !s.Reachable {
			fmt.Fprintf(w, "not reachable (%s)\n", s.Error)
			return
		}
		fmt.Fprintf(w, "%s\n", s.Version)
		if s.NetworkReady {
			fmt.Fprintf(w, "  NetworkReady: true\n")
		} else {
			fmt.Fprintf(w, "  NetworkReady: false (%s)\n", s.NetworkReason)
		}
		if s.Sandboxes != nil {
			fmt.Fprintf(w, "  Sandboxes: %d ready, %d not ready\n", s.Sandboxes["ready"], s.Sandboxes["notready"])
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  Error: %s\n", s.Error)
		}
		if a := s.Admission; a != nil {
			fmt.Fprintf(w, "  Admission (0 = unbounded):\n")
			if len(a.Lanes) == 0 {
				for _, name := range slices.Sorted(maps.Keys(a.Limits)) {
					fmt.Fprintf(w, "    %-6s limit %d\n", name, a.Limits[name])
				}
			}
			for _, l := range a.Lanes {
				fmt.Fprintf(w, "    %-6s limit %d, in flight %d, queued %d, admitted %d, timed out %d, mean wait %.1f ms\n",
					l.Name, l.Limit, l.InFlight, l.Queued, l.Admitted, l.TimedOut, l.MeanWaitMS)
			}
			if b := a.AddBound; b != nil {
				kind := "fixed"
				if b.Adaptive {
					kind = fmt.Sprintf("adaptive, %d to %d", b.Floor, b.Max)
				}
				fmt.Fprintf(w, "  ADD bound %d (%s): %s\n", b.Bound, kind, b.Reason)
			}
		}
	}
}

func printNetwork(w io.Writer, indent string, n criserver.NetworkInfo) {
	fmt.Fprintf(w, "%sfile:         %s\n", indent, n.File)
	fmt.Fprintf(w, "%scniVersion:   %s\n", indent, n.CNIVersion)
	fmt.Fprintf(w, "%splugins:      %s\n", indent, strings.Join(n.Plugins, " -> "))
	caps := strings.Join(n.Capabilities, ", ")
	if caps == "" {
		caps = "(none)"
	}
	fmt.Fprintf(w, "%scapabilities: %s\n", indent, caps)
}
