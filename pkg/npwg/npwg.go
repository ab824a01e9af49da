// Package npwg reads the Network Plumbing Working Group's multi-network annotation
// (k8s.v1.cni.cncf.io/networks, specification v1) into the networks a pod asks for, in the
// core's form (cninetwork.NetworkSelection). It only reads: what a network may be asked for,
// and whether it exists, is checked by the core (cninetwork.NetworkSelection.Normalize, which
// Parse calls, and the Plugin's ValidatePod).
package npwg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cnishim/cnishim/internal/lib/cniargs"
	"github.com/cnishim/cnishim/pkg/cninetwork"
)

// NetworksAnnotation is the pod annotation of the Network Plumbing Working Group's
// multi-network specification (v1) that selects the networks a pod is attached to besides
// the default network.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// Parse parses the value of the NetworksAnnotation in either of the
// specification's forms: the short form, comma-separated elements "[namespace/]name[@interface]"
// (spaces around elements are ignored), or a JSON list of network selection elements. A value
// that is empty or only spaces selects no network. Every element is checked: names and
// interfaces must be valid CNI names, namespaces DNS labels, addresses, MACs, ports and
// protocols well-formed, cni-args a JSON object; unknown JSON fields are refused rather than
// ignored. The error names the element and what is wrong with it. Protocols come back in lower
// case, an empty one as "tcp", and cni-args compacted.
func Parse(annotation string) ([]cninetwork.NetworkSelection, error) {
	s := strings.TrimSpace(annotation)
	if s == "" {
		return nil, nil
	}
	var out []cninetwork.NetworkSelection
	if strings.HasPrefix(s, "[") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("network selection: JSON list: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("network selection: JSON list: data after the list")
		}
		if err := checkFieldNames(s); err != nil {
			return nil, err
		}
	} else {
		for i, e := range strings.Split(s, ",") {
			sel, err := parseShortSelection(strings.TrimSpace(e))
			if err != nil {
				return nil, fmt.Errorf("network selection element %d (%s): %w", i, cniargs.QuoteUnprintable(e), err)
			}
			out = append(out, sel)
		}
	}
	for i := range out {
		if err := out[i].Normalize(); err != nil {
			return nil, fmt.Errorf("network selection element %d (network %q): %w", i, out[i].Name, err)
		}
	}
	return out, nil
}

// selectionFields are the JSON fields of a network selection element, as spelled.
var selectionFields = []string{"name", "namespace", "interface", "ips", "mac", "default-route", "portMappings", "bandwidth", "cni-args"}

// checkFieldNames refuses fields of a JSON list of network selection elements that are not
// spelled exactly as the specification does, which encoding/json would match regardless of
// case.
func checkFieldNames(list string) error {
	var elems []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(list), &elems); err != nil {
		return fmt.Errorf("network selection: JSON list: %w", err)
	}
	for i, e := range elems {
		for k := range e {
			if !slices.Contains(selectionFields, k) {
				return fmt.Errorf("network selection element %d: unknown field %q", i, k)
			}
		}
	}
	return nil
}

// parseShortSelection parses one element of the short form.
func parseShortSelection(e string) (cninetwork.NetworkSelection, error) {
	var sel cninetwork.NetworkSelection
	if e == "" {
		return sel, errors.New("empty element")
	}
	if strings.Count(e, "/") > 1 {
		return sel, errors.New(`more than one "/"`)
	}
	if strings.Count(e, "@") > 1 {
		return sel, errors.New(`more than one "@"`)
	}
	if at, slash := strings.Index(e, "@"), strings.Index(e, "/"); at >= 0 && at < slash {
		return sel, errors.New(`"@interface" must come last, after "namespace/name"`)
	}
	if ns, rest, ok := strings.Cut(e, "/"); ok {
		if ns == "" {
			return sel, errors.New(`empty namespace before "/"`)
		}
		sel.Namespace, e = ns, rest
	}
	if name, ifName, ok := strings.Cut(e, "@"); ok {
		if ifName == "" {
			return sel, errors.New(`empty interface after "@"`)
		}
		sel.Interface, e = ifName, name
	}
	sel.Name = e
	return sel, nil
}
