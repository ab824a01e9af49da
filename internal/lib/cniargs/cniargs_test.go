package cniargs

import (
	"errors"
	"reflect"
	"testing"
)

func TestKubernetes(t *testing.T) {
	good := Pod{SandboxID: "abc123", Namespace: "default", Name: "web-0", UID: "4f1c-77"}
	tests := []struct {
		name      string
		pod       Pod
		want      string
		wantField string
	}{
		{name: "ok", pod: good, want: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=4f1c-77"},
		{name: "empty optional fields", pod: Pod{SandboxID: "x"}, want: "IgnoreUnknown=1;K8S_POD_NAMESPACE=;K8S_POD_NAME=;K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID="},
		{name: "empty sandbox", pod: Pod{Name: "a"}, wantField: "sandbox ID"},
		{name: "semicolon in name", pod: with(good, func(p *Pod) { p.Name = "a;K8S_POD_NAMESPACE=kube-system" }), wantField: "name"},
		{name: "equals in namespace", pod: with(good, func(p *Pod) { p.Namespace = "a=b" }), wantField: "namespace"},
		{name: "NUL in UID", pod: with(good, func(p *Pod) { p.UID = "a\x00b" }), wantField: "UID"},
		{name: "newline in name", pod: with(good, func(p *Pod) { p.Name = "a\nb" }), wantField: "name"},
		{name: "carriage return in namespace", pod: with(good, func(p *Pod) { p.Namespace = "a\rb" }), wantField: "namespace"},
		{name: "semicolon in sandbox ID", pod: with(good, func(p *Pod) { p.SandboxID = "a;b" }), wantField: "sandbox ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := Kubernetes(tt.pod)
			if tt.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("Kubernetes(%+v) error = %v; want a *FieldError", tt.pod, err)
				}
				if fe.Field != tt.wantField {
					t.Fatalf("field = %q; want %q (error %v)", fe.Field, tt.wantField, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := String(args); got != tt.want {
				t.Fatalf("String = %q\nwant %q", got, tt.want)
			}
		})
	}
}

func with(p Pod, f func(*Pod)) Pod {
	f(&p)
	return p
}

func TestParse(t *testing.T) {
	got, err := Parse("A=1;B=;C=x")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"A", "1"}, {"B", ""}, {"C", "x"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse = %v; want %v", got, want)
	}
	if _, err := Parse("A=1;B"); err == nil {
		t.Fatal("Parse(\"A=1;B\") succeeded; want error")
	}
}

// FuzzKubernetes checks that whatever Kubernetes accepts, a plugin reads back unchanged.
func FuzzKubernetes(f *testing.F) {
	f.Add("abc", "default", "web-0", "uid")
	f.Add("abc", "a;b", "c=d", "e\nf")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, id, ns, name, uid string) {
		p := Pod{SandboxID: id, Namespace: ns, Name: name, UID: uid}
		args, err := Kubernetes(p)
		if err != nil {
			return
		}
		back, err := Parse(String(args))
		if err != nil {
			t.Fatalf("Parse(String(%v)): %v", args, err)
		}
		if !reflect.DeepEqual(back, args) {
			t.Fatalf("round trip of %+v: got %v; want %v", p, back, args)
		}
	})
}

func TestQuoteUnprintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"default/web", "default/web"},
		{"spaces and ünïcode", "spaces and ünïcode"},
		{"a\nb", `"a\nb"`},
		{"nul\x00", `"nul\x00"`},
		{"\xff", `"\xff"`},
	}
	for _, tt := range tests {
		if got := QuoteUnprintable(tt.in); got != tt.want {
			t.Errorf("QuoteUnprintable(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}
