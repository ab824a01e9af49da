// Command apicheck lists the exported names of the project's public packages (pkg/...) that
// have no caller outside their package other than tests: package-level names, and the
// methods of exported types. A name counts as called when code of another package of the
// module, outside test files and the test/ tree, refers to it, or when one of its types
// implements an interface declared there that names the method (so a method called through
// an interface, as the CRI server calls the plugin's, counts).
//
// It exits 1 and prints one line per name without a caller, and prints nothing else unless
// -v is given, which adds, per package, how many names it exports.
//
// Usage, from the module root: go run ./hack/apicheck [-v]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// listed is what go list says of a package.
type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
	Module     *struct{ Path string }
}

func main() {
	verbose := flag.Bool("v", false, "also print how many names each public package exports")
	flag.Parse()
	unused, counts, err := check()
	if err != nil {
		fmt.Fprintln(os.Stderr, "apicheck:", err)
		os.Exit(2)
	}
	if *verbose {
		for _, c := range counts {
			fmt.Println(c)
		}
	}
	for _, u := range unused {
		fmt.Println(u)
	}
	if len(unused) > 0 {
		os.Exit(1)
	}
}

func check() (unused, counts []string, err error) {
	out, err := exec.Command("go", "list", "-export", "-deps", "-json", "./...").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %w", err)
	}
	var all []listed
	byPath := map[string]listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var l listed
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, err
		}
		all = append(all, l)
		byPath[l.ImportPath] = l
	}
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list -m: %w", err)
	}
	module := strings.TrimSpace(string(mod))

	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		l, ok := byPath[path]
		if !ok || l.Export == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(l.Export)
	})

	// The public packages and their names.
	type name struct {
		pkg, id string
		obj     types.Object
	}
	var public []*types.Package
	var names []name
	for _, l := range all {
		if l.Module == nil || l.Module.Path != module || !strings.HasPrefix(l.ImportPath, module+"/pkg/") {
			continue
		}
		p, err := imp.Import(l.ImportPath)
		if err != nil {
			return nil, nil, err
		}
		public = append(public, p)
		n := 0
		for _, id := range p.Scope().Names() {
			o := p.Scope().Lookup(id)
			if !o.Exported() {
				continue
			}
			n++
			names = append(names, name{p.Path(), id, o})
			if tn, ok := o.(*types.TypeName); ok {
				if named, ok := tn.Type().(*types.Named); ok {
					for i := range named.NumMethods() {
						if m := named.Method(i); m.Exported() {
							names = append(names, name{p.Path(), id + "." + m.Name(), m})
						}
					}
				}
			}
		}
		counts = append(counts, fmt.Sprintf("%s: %d exported top-level names", strings.TrimPrefix(p.Path(), module+"/"), n))
	}

	used := map[types.Object]bool{}
	var ifaces []*types.Interface
	for _, l := range all {
		if l.Module == nil || l.Module.Path != module || strings.HasPrefix(l.ImportPath, module+"/test/") || len(l.GoFiles) == 0 {
			continue
		}
		var files []*ast.File
		for _, f := range l.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(l.Dir, f), nil, 0)
			if err != nil {
				return nil, nil, err
			}
			files = append(files, af)
		}
		info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Defs: map[*ast.Ident]types.Object{}}
		conf := types.Config{Importer: imp, Error: func(error) {}}
		if _, err := conf.Check(l.ImportPath, fset, files, info); err != nil {
			return nil, nil, fmt.Errorf("type-check %s: %w", l.ImportPath, err)
		}
		for _, o := range info.Uses {
			if o.Pkg() != nil && o.Pkg().Path() != l.ImportPath {
				used[o] = true
				if f, ok := o.(*types.Func); ok {
					used[f.Origin()] = true
				}
			}
		}
		for _, o := range info.Defs {
			if tn, ok := o.(*types.TypeName); ok {
				if it, ok := tn.Type().Underlying().(*types.Interface); ok && it.NumMethods() > 0 {
					ifaces = append(ifaces, it)
				}
			}
		}
	}
	// Interfaces of every dependency too (klog.KMetadata, fmt.Stringer), which the module's
	// code may hand the public types to.
	for _, l := range all {
		if l.Export == "" || (l.Module != nil && l.Module.Path == module) {
			continue
		}
		p, err := imp.Import(l.ImportPath)
		if err != nil {
			continue // a package the importer cannot read adds no interface
		}
		for _, id := range p.Scope().Names() {
			if tn, ok := p.Scope().Lookup(id).(*types.TypeName); ok && tn.Exported() {
				if it, ok := tn.Type().Underlying().(*types.Interface); ok && it.NumMethods() > 0 {
					ifaces = append(ifaces, it)
				}
			}
		}
	}
	// Types reached through what is used: the type of a used field, parameter or result, and
	// the exported fields of a used struct type.
	isPublic := map[*types.Package]bool{}
	for _, p := range public {
		isPublic[p] = true
	}
	var reach func(t types.Type, seen map[types.Type]bool)
	reach = func(t types.Type, seen map[types.Type]bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		switch t := t.(type) {
		case *types.Named:
			if o := t.Obj(); o.Pkg() != nil && isPublic[o.Pkg()] {
				used[o] = true
				if st, ok := t.Underlying().(*types.Struct); ok {
					for i := range st.NumFields() {
						if f := st.Field(i); f.Exported() {
							reach(f.Type(), seen)
						}
					}
				}
			}
		case *types.Pointer:
			reach(t.Elem(), seen)
		case *types.Slice:
			reach(t.Elem(), seen)
		case *types.Array:
			reach(t.Elem(), seen)
		case *types.Map:
			reach(t.Key(), seen)
			reach(t.Elem(), seen)
		case *types.Signature:
			for i := range t.Params().Len() {
				reach(t.Params().At(i).Type(), seen)
			}
			for i := range t.Results().Len() {
				reach(t.Results().At(i).Type(), seen)
			}
		}
	}
	seen := map[types.Type]bool{}
	for o := range used {
		if o.Pkg() != nil && isPublic[o.Pkg()] {
			reach(o.Type(), seen)
		}
	}
	// Methods called through an interface the package's types satisfy.
	for _, n := range names {
		m, ok := n.obj.(*types.Func)
		if !ok || used[m] {
			continue
		}
		recv := m.Signature().Recv()
		if recv == nil {
			continue
		}
		for _, it := range ifaces {
			if types.Implements(recv.Type(), it) || types.Implements(types.NewPointer(recv.Type()), it) {
				for i := range it.NumMethods() {
					if it.Method(i).Name() == m.Name() {
						used[m] = true
					}
				}
			}
		}
	}
	for _, n := range names {
		if !used[n.obj] {
			unused = append(unused, fmt.Sprintf("%s.%s: no caller outside the package but tests", strings.TrimPrefix(n.pkg, module+"/"), n.id))
		}
	}
	sort.Strings(unused)
	return unused, counts, nil
}
