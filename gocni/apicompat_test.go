package cni

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/build"
	"go/parser"
	"go/printer"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// goCNIVersion is the go-cni release whose API the drop-in keeps (hack/versions.sh pins it too).
const goCNIVersion = "v1.1.14"

// Every exported name of go-cni's package, on Linux, is in the drop-in with the same
// declaration: functions and methods with the same signature (parameter names aside), types
// with the same definition (a struct's exported fields, an interface's methods), constants with
// the same value, variables with the same type. A caller of go-cni therefore compiles against
// the drop-in; more names are allowed.
func TestGoCNIAPI(t *testing.T) {
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/containerd/go-cni@"+goCNIVersion).Output()
	if err != nil {
		t.Fatalf("go mod download go-cni %s: %v", goCNIVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download go-cni %s: no module dir in %s", goCNIVersion, out)
	}
	want := apiOf(t, mod.Dir)
	got := apiOf(t, ".")
	if len(want) < 60 {
		t.Fatalf("go-cni's API has %d names; the reader is broken", len(want))
	}
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s is missing: go-cni has %s", name, want[name])
		case g != want[name]:
			t.Errorf("%s differs:\n  go-cni:  %s\n  drop-in: %s", name, want[name], g)
		}
	}
	t.Logf("%d names of go-cni %s checked", len(want), goCNIVersion)
}

// apiOf returns the exported declarations of the package in dir (its Linux, non-test files),
// by name ("Type.Method" for methods), each printed in a form that leaves out what does not
// make the API: parameter names, comments, unexported struct fields.
func apiOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	api := map[string]string{}
	for _, f := range files {
		if ok, err := build.Default.MatchFile(dir, filepath.Base(f)); err != nil || !ok || strings.HasSuffix(f, "_test.go") {
			continue // a test, or a file for another platform or build tag
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				name := d.Name.Name
				if d.Recv != nil {
					recv := strings.TrimPrefix(printed(fset, d.Recv.List[0].Type), "*")
					if !ast.IsExported(recv) {
						continue
					}
					name = recv + "." + name
				}
				if ast.IsExported(d.Name.Name) {
					api[name] = printed(fset, stripNames(d.Type))
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							eq := ""
							if s.Assign.IsValid() {
								eq = "= "
							}
							api[s.Name.Name] = "type " + eq + printed(fset, exportedOnly(s.Type))
						}
					case *ast.ValueSpec:
						for i, n := range s.Names {
							if !n.IsExported() {
								continue
							}
							v := d.Tok.String()
							if s.Type != nil {
								v += " " + printed(fset, s.Type)
							}
							if d.Tok == token.CONST && i < len(s.Values) {
								v += " = " + printed(fset, s.Values[i])
							}
							if d.Tok == token.VAR && s.Type == nil && i < len(s.Values) {
								// errors.New(...) and the like: the type is what the call returns.
								if call, ok := s.Values[i].(*ast.CallExpr); ok {
									v += " " + printed(fset, call.Fun)
								}
							}
							api[n.Name] = v
						}
					}
				}
			}
		}
	}
	return api
}

// stripNames returns a function type with its parameter and result names dropped.
func stripNames(ft *ast.FuncType) *ast.FuncType {
	strip := func(fl *ast.FieldList) *ast.FieldList {
		if fl == nil {
			return nil
		}
		out := &ast.FieldList{}
		for _, f := range fl.List {
			n := len(f.Names)
			if n == 0 {
				n = 1
			}
			for range n {
				out.List = append(out.List, &ast.Field{Type: f.Type})
			}
		}
		return out
	}
	return &ast.FuncType{Params: strip(ft.Params), Results: strip(ft.Results)}
}

// exportedOnly returns a type expression with unexported struct fields and comments dropped,
// and interface methods without their parameter names.
func exportedOnly(e ast.Expr) ast.Expr {
	switch x := e.(type) {
	case *ast.StructType:
		out := &ast.StructType{Fields: &ast.FieldList{}}
		for _, f := range x.Fields.List {
			var names []*ast.Ident
			for _, n := range f.Names {
				if n.IsExported() {
					names = append(names, ast.NewIdent(n.Name))
				}
			}
			if len(f.Names) == 0 || len(names) > 0 {
				out.Fields.List = append(out.Fields.List, &ast.Field{Names: names, Type: f.Type, Tag: f.Tag})
			}
		}
		return out
	case *ast.InterfaceType:
		out := &ast.InterfaceType{Methods: &ast.FieldList{}}
		for _, f := range x.Methods.List {
			if ft, ok := f.Type.(*ast.FuncType); ok {
				out.Methods.List = append(out.Methods.List, &ast.Field{Names: f.Names, Type: stripNames(ft)})
				continue
			}
			out.Methods.List = append(out.Methods.List, &ast.Field{Names: f.Names, Type: f.Type})
		}
		return out
	case *ast.FuncType:
		return stripNames(x)
	}
	return e
}

func printed(fset *token.FileSet, n any) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		panic(err)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
