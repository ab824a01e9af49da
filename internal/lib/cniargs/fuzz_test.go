package cniargs

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// k8sArgs is how plugins read the Kubernetes CNI_ARGS (the shape the kubelet-era plugins and
// libcni's own examples use), through libcni's types.LoadArgs, which matches keys to field
// names: hence the names.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
}

// FuzzCNIArgsLibcni builds the CNI_ARGS of arbitrary pod identities and checks them against
// libcni and the plugins (FuzzKubernetes checks them against our own Parse). Each identity is
// either refused with a *FieldError that is justified (an empty sandbox ID, or a value holding a
// character CNI_ARGS cannot carry), or becomes a CNI_ARGS string that libcni puts in the
// plugin's environment unchanged and that plugins parse back, with libcni's LoadArgs, into
// exactly the values given. The seeds in testdata/fuzz/FuzzCNIArgsLibcni run as regression
// tests with plain go test.
func FuzzCNIArgsLibcni(f *testing.F) {
	f.Fuzz(func(t *testing.T, sandboxID, namespace, name, uid string) {
		p := Pod{SandboxID: sandboxID, Namespace: namespace, Name: name, UID: uid}
		pairs, err := Kubernetes(p)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			value := map[string]string{"sandbox ID": sandboxID, "namespace": namespace, "name": name, "UID": uid}
			v, known := value[fe.Field]
			switch {
			case !known:
				t.Fatalf("error names unknown field %q", fe.Field)
			case fe.Field == "sandbox ID" && sandboxID == "":
			case v != fe.Value || !strings.ContainsAny(v, ";=\x00\n\r"):
				t.Fatalf("refused %s %q, which CNI_ARGS can carry: %v", fe.Field, v, err)
			}
			return
		}
		if sandboxID == "" {
			t.Fatal("accepted an empty sandbox ID")
		}
		for _, v := range []string{sandboxID, namespace, name, uid} {
			if strings.ContainsAny(v, ";=\x00\n\r") {
				t.Fatalf("accepted %q, which CNI_ARGS cannot carry", v)
			}
		}

		s := String(pairs)
		// libcni builds the plugin's environment from the same pairs: the same string.
		var env string
		for _, kv := range (&invoke.Args{Command: "ADD", PluginArgs: pairs}).AsEnv() {
			if v, ok := strings.CutPrefix(kv, "CNI_ARGS="); ok {
				env = v
			}
		}
		if env != s {
			t.Fatalf("libcni's CNI_ARGS %q, String %q", env, s)
		}

		// Plugins read it back unchanged.
		var got k8sArgs
		if err := types.LoadArgs(s, &got); err != nil {
			t.Fatalf("LoadArgs(%q): %v", s, err)
		}
		if !got.IgnoreUnknown || string(got.K8S_POD_INFRA_CONTAINER_ID) != sandboxID ||
			string(got.K8S_POD_NAMESPACE) != namespace || string(got.K8S_POD_NAME) != name ||
			string(got.K8S_POD_UID) != uid {
			t.Fatalf("LoadArgs(%q) = %+v, want %+v", s, got, p)
		}
		back, err := Parse(s)
		if err != nil || !slices.Equal(back, pairs) {
			t.Fatalf("Parse(%q) = %q, %v; want %q", s, back, err, pairs)
		}
	})
}
