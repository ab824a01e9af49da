// Package cniargs builds and checks the CNI_ARGS a Kubernetes runtime hands to CNI plugins:
// "IgnoreUnknown=1;K8S_POD_NAMESPACE=...;K8S_POD_NAME=...;K8S_POD_INFRA_CONTAINER_ID=...;
// K8S_POD_UID=...". The CNI_ARGS format has no quoting, so a value holding ';' or '=' would
// silently become another key, and NUL or a newline would corrupt the plugin's environment;
// such values are refused, never escaped.
package cniargs

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Keys of the Kubernetes CNI_ARGS, in the order the kubelet passes them.
const (
	KeyIgnoreUnknown = "IgnoreUnknown"
	KeyNamespace     = "K8S_POD_NAMESPACE"
	KeyName          = "K8S_POD_NAME"
	KeySandboxID     = "K8S_POD_INFRA_CONTAINER_ID"
	KeyUID           = "K8S_POD_UID"
)

// Pod is the identity of a pod sandbox as CNI_ARGS carry it.
type Pod struct {
	SandboxID string
	Namespace string
	Name      string
	UID       string
}

// FieldError reports a value that cannot be carried in CNI_ARGS.
type FieldError struct {
	// Field names the offending field: "sandbox ID", "namespace", "name" or "UID".
	Field string
	// Value is the offending value.
	Value string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q %s", e.Field, e.Value, e.Reason)
}

// Check returns a *FieldError if value cannot be carried in CNI_ARGS as field: it holds ';',
// '=', NUL, a carriage return or a newline.
func Check(field, value string) error {
	if i := strings.IndexAny(value, ";=\x00\n\r"); i >= 0 {
		return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf("contains %q, which CNI_ARGS cannot carry", value[i])}
	}
	return nil
}

// Kubernetes returns the CNI_ARGS pairs for p, in the kubelet's order, or a *FieldError for the
// first field that is empty (the sandbox ID only) or cannot be carried.
func Kubernetes(p Pod) ([][2]string, error) {
	if p.SandboxID == "" {
		return nil, &FieldError{Field: "sandbox ID", Reason: "is empty"}
	}
	for _, f := range [...]struct{ name, value string }{
		{"sandbox ID", p.SandboxID},
		{"namespace", p.Namespace},
		{"name", p.Name},
		{"UID", p.UID},
	} {
		if err := Check(f.name, f.value); err != nil {
			return nil, err
		}
	}
	return [][2]string{
		{KeyIgnoreUnknown, "1"},
		{KeyNamespace, p.Namespace},
		{KeyName, p.Name},
		{KeySandboxID, p.SandboxID},
		{KeyUID, p.UID},
	}, nil
}

// QuoteUnprintable returns value, a pod's name, namespace or ID as a client sent it, quoted if
// it holds unprintable characters or invalid UTF-8, so that it cannot put a raw newline or NUL
// into an error message or a log line.
func QuoteUnprintable(value string) string {
	if !utf8.ValidString(value) || strings.ContainsFunc(value, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(value)
	}
	return value
}

// String joins pairs the way libcni puts them in CNI_ARGS: "K=V" joined by ';'.
func String(pairs [][2]string) string {
	var b strings.Builder
	for i, kv := range pairs {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(kv[1])
	}
	return b.String()
}

// Parse splits a CNI_ARGS string into its pairs, as plugins read it. It returns an error for
// an entry without '='.
func Parse(s string) ([][2]string, error) {
	if s == "" {
		return nil, nil
	}
	entries := strings.Split(s, ";")
	out := make([][2]string, 0, len(entries))
	for _, e := range entries {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("CNI_ARGS entry %q: no '='", e)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}
