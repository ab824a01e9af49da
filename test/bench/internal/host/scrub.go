//go:build linux

package host

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/cnishim/cnishim/test/bench/internal/impls"
)

// scrubRules deletes, with iptables itself, every rule that names one of pods and every
// per-pod chain of theirs, in the nat, filter and mangle tables: the last resort of the
// sweep, so that even an interrupted benchmark leaves no rule behind.
func (e *Env) scrubRules(pods []impls.PodSpec) error {
	var errs []error
	for _, table := range []string{"nat", "filter", "mangle"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables-save -t %s: %w", table, err))
			continue
		}
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				name, _, _ := strings.Cut(line[1:], " ")
				if strings.HasPrefix(name, "CNI-") && e.ownsChain(name, pods) {
					chains = append(chains, name)
				}
			case strings.HasPrefix(line, "-A "):
				if !e.mentionsAny(line, pods) {
					continue
				}
				args, err := splitRule(line)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				args[0] = "-D"
				if out, err := exec.Command("iptables", append([]string{"-w", "-t", table}, args...)...).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("iptables -t %s %s: %w: %s", table, strings.Join(args, " "), err, out))
				}
			}
		}
		for _, c := range chains {
			for _, op := range []string{"-F", "-X"} {
				if out, err := exec.Command("iptables", "-w", "-t", table, op, c).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("iptables -t %s %s %s: %w: %s", table, op, c, err, out))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// mentionsAny reports whether a rule line names one of the pods on one of the
// environment's networks.
func (e *Env) mentionsAny(line string, pods []impls.PodSpec) bool {
	for _, n := range e.networks() {
		for i := range pods {
			if mentions(line, n.Network, &pods[i]) {
				return true
			}
		}
	}
	return false
}

func (e *Env) ownsChain(name string, pods []impls.PodSpec) bool {
	for _, n := range e.networks() {
		for i := range pods {
			if name == chainName("CNI-DN-", n.Network, pods[i].ID) || name == chainName("CNI-", n.Network, pods[i].ID) {
				return true
			}
		}
	}
	return false
}

// splitRule splits an iptables-save rule line into arguments: words separated by spaces,
// double-quoted strings (with \" and \\ escapes) as one argument.
func splitRule(line string) ([]string, error) {
	var (
		args   []string
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case c == ' ' && !quoted:
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("iptables rule %q: unterminated quote", line)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
