//go:build linux

// Command cnishim is a small CRI runtime for pod sandboxes whose networks the cninetwork plugin
// sets up, plus the commands a node operator needs around it:
//
//	cnishim serve    serve the CRI RuntimeService (pod sandboxes only) on a unix socket
//	cnishim status   readiness, the chosen CNI network, every skipped config and why
//	cnishim watch    print each change of the chosen network until interrupted
//	cnishim gc       one CNI GC pass against a running server's sandboxes (or a given list)
//	cnishim demo     set up three pods on a built-in bridge network, prove they talk, tear down
//	cnishim version  print the version
//
// Run "cnishim <command> -h" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// version is the cnishim version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "v0.1.0-dev"

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "serve the CRI RuntimeService for pod sandboxes on a unix socket", runServe},
		{"status", "show readiness, the chosen CNI network and every skipped config file", runStatus},
		{"watch", "print each change of the chosen CNI network until interrupted", runWatch},
		{"gc", "run one CNI GC pass against a running server's sandboxes (or a given list)", runGC},
		{"check", "run CNI CHECK on every network of a running server's pod sandbox", runCheck},
		{"demo", "set up three pods on a built-in bridge network, prove they talk, tear down", runDemo},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	klog.Flush()
	os.Exit(code)
}

// errUsage marks an error in how the command was called; it exits 2.
var errUsage = errors.New("usage")

// errNotReady makes status exit 1 after printing its report.
var errNotReady = errors.New("network not ready")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errNotReady):
			return 1
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "cnishim %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "cnishim %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "cnishim: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "cnishim %s: a kubelet-style CNI network plugin shim and a CRI runtime for pod sandboxes.\n\n", version)
	fmt.Fprintln(w, "Usage: cnishim <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "  help     show this list")
	fmt.Fprintln(w, "\nRun \"cnishim <command> -h\" for a command's flags.")
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cnishim %s\n", version)
	return nil
}

// newFlagSet returns a FlagSet for a subcommand whose usage prints synopsis and the flags.
func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("cnishim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: cnishim %s [flags]\n", name)
		if synopsis != "" {
			fmt.Fprintf(stderr, "\n%s\n", synopsis)
		}
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; positional arguments are an error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// logFlags are a command's -v and -vmodule: the klog logger it hands the libraries writes to
// the command's stderr, never into its report on stdout. At the default -v=0 that is errors
// and a few lines a server operator always wants; -v=2 adds config changes and the sandbox
// lifecycle, -v=4 each pod network operation, -v=5 each RPC.
type logFlags struct{ config *textlogger.Config }

func addLogFlags(fs *flag.FlagSet, stderr io.Writer) logFlags {
	c := textlogger.NewConfig(textlogger.Output(stderr))
	fs.Var(c.Verbosity(), "v", "log verbosity: 2 adds config changes and sandbox lifecycle, 4 each pod network operation, 5 each RPC")
	fs.Var(c.VModule(), "vmodule", "per-file log verbosity, comma-separated pattern=N")
	return logFlags{config: c}
}

// context returns ctx carrying the logger the flags configure.
func (l logFlags) context(ctx context.Context) context.Context {
	return klog.NewContext(ctx, textlogger.NewLogger(l.config))
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
