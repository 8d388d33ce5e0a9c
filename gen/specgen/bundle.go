package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// loader reads YAML/JSON files of the vendored spec (spec/data/api) and
// inlines every $ref.
//
// Matrix's own documentation tooling resolves references by shallow merge:
// the referenced object's keys are taken first and the keys written next to
// the $ref ("siblings") win. A plain JSON-Reference resolver would drop the
// siblings (errors/rate_limited.yaml would lose retry_after_ms), so the
// bundler implements the Matrix semantics. A reference may carry a JSON
// pointer fragment (security.yaml#/accessTokenBearer).
type loader struct {
	root  string // the spec/data/api directory
	cache map[string]any
	// raw holds each file as parsed, before its references are resolved,
	// for references within the file (#/components/schemas/...).
	raw map[string]any
	// absent replaces references to files that are not in the upstream copy
	// (see the absent-refs overlay): target path → replacement.
	absent map[string]any
	// usedAbsent records which replacements were needed.
	usedAbsent map[string]bool
}

func newLoader(specDir string) *loader {
	l := &loader{root: filepath.Join(specDir, "data", "api"), cache: map[string]any{}, raw: map[string]any{},
		absent: map[string]any{}, usedAbsent: map[string]bool{}}
	for _, a := range absentRefs {
		l.absent[a.Target] = a.Replacement
	}
	return l
}

// load returns the parsed, fully inlined content of file (relative to root).
func (l *loader) load(file string) (any, error) {
	return l.loadStack(file, nil)
}

func (l *loader) loadStack(file string, stack []string) (any, error) {
	for _, s := range stack {
		if s == file {
			return nil, fmt.Errorf("$ref cycle: %s", strings.Join(append(stack, file), " -> "))
		}
	}
	if v, ok := l.cache[file]; ok {
		return deepCopy(v), nil
	}
	raw, err := os.ReadFile(filepath.Join(l.root, file))
	if err != nil {
		return nil, err
	}
	var node any
	if strings.HasSuffix(file, ".json") {
		err = json.Unmarshal(raw, &node)
	} else {
		err = yaml.Unmarshal(raw, &node)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	node = normalize(node)
	l.raw[file] = deepCopy(node)
	out, err := l.resolve(node, file, append(stack, file), false)
	if err != nil {
		return nil, err
	}
	l.cache[file] = out
	return deepCopy(out), nil
}

// resolve walks v (read from file) and inlines every {$ref: ...}.
// inExample is true below an example/examples/x-example key, where Matrix's
// tooling also resolves references, and additionally looks them up in the
// API's examples/ directory ("Relative to the examples directory").
func (l *loader) resolve(v any, file string, stack []string, inExample bool) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok {
			resolved, err := l.deref(ref, file, stack, inExample)
			if err != nil {
				return nil, err
			}
			if len(t) == 1 {
				return resolved, nil
			}
			base, ok := resolved.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: $ref %q with sibling keys points at a non-object", file, ref)
			}
			for k, sv := range t {
				if k == "$ref" {
					continue
				}
				r, err := l.resolve(sv, file, stack, inExample)
				if err != nil {
					return nil, err
				}
				base[k] = r // siblings win (shallow merge)
			}
			return base, nil
		}
		out := make(map[string]any, len(t))
		for k, sv := range t {
			ex := inExample || k == "example" || k == "examples" || k == "x-example"
			r, err := l.resolve(sv, file, stack, ex)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, sv := range t {
			r, err := l.resolve(sv, file, stack, inExample)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// deref loads the target of ref (relative to file), following its fragment.
func (l *loader) deref(ref, file string, stack []string, inExample bool) (any, error) {
	path, fragment, _ := strings.Cut(ref, "#")
	if path == "" {
		return l.derefLocal(ref, fragment, file, stack, inExample)
	}
	if strings.Contains(path, "://") {
		return nil, fmt.Errorf("%s: unsupported $ref %q (only relative file references occur in the Matrix spec)", file, ref)
	}
	target, err := l.refTarget(path, file, inExample)
	if err != nil {
		return nil, err
	}
	var v any
	if repl, ok := l.absent[target]; ok {
		l.usedAbsent[target] = true
		v = deepCopy(repl)
	} else if v, err = l.loadStack(target, stack); err != nil {
		return nil, err
	}
	if fragment != "" {
		if v = follow(v, fragment); v == nil {
			return nil, fmt.Errorf("%s: $ref %q: not found in %s", file, ref, target)
		}
	}
	return v, nil
}

// derefLocal resolves a reference within file ("#/components/schemas/x").
func (l *loader) derefLocal(ref, fragment, file string, stack []string, inExample bool) (any, error) {
	key := file + "#" + fragment
	for _, s := range stack {
		if s == key {
			return nil, fmt.Errorf("$ref cycle: %s", strings.Join(append(stack, key), " -> "))
		}
	}
	v := follow(l.raw[file], fragment)
	if v == nil {
		return nil, fmt.Errorf("%s: $ref %q: not found", file, ref)
	}
	return l.resolve(deepCopy(v), file, append(stack, key), inExample)
}

// follow walks a JSON pointer fragment ("/a/b"); nil when a step is missing.
func follow(v any, fragment string) any {
	for _, tok := range strings.Split(strings.TrimPrefix(fragment, "/"), "/") {
		if tok == "" {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok || m[tok] == nil {
			return nil
		}
		v = m[tok]
	}
	return v
}

func (l *loader) refTarget(ref, file string, inExample bool) (string, error) {
	cand := filepath.ToSlash(filepath.Join(filepath.Dir(file), ref))
	if _, ok := l.absent[cand]; ok {
		return cand, nil
	}
	if _, err := os.Stat(filepath.Join(l.root, cand)); err == nil {
		return cand, nil
	}
	if inExample {
		// examples/*.json reference each other relative to the examples dir.
		api := strings.SplitN(filepath.ToSlash(file), "/", 2)[0]
		alt := filepath.ToSlash(filepath.Join(api, "examples", ref))
		if _, err := os.Stat(filepath.Join(l.root, alt)); err == nil {
			return alt, nil
		}
	}
	return "", fmt.Errorf("%s: $ref %q: no such file (%s)", file, ref, cand)
}

// normalize turns YAML's map[any]any (from integer keys such as response
// codes) into map[string]any so the tree can be marshalled as JSON.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, sv := range t {
			t[k] = normalize(sv)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, sv := range t {
			out[fmt.Sprint(k)] = normalize(sv)
		}
		return out
	case []any:
		for i, sv := range t {
			t[i] = normalize(sv)
		}
		return t
	default:
		return v
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, sv := range t {
			out[k] = deepCopy(sv)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, sv := range t {
			out[i] = deepCopy(sv)
		}
		return out
	default:
		return v
	}
}

// api describes one generated API: the root files bundled into it.
type api struct {
	Name  string   // output directory under gen/ and Go package name
	Title string   // info.title of the bundled document
	Files []string // root OpenAPI 3.1 files, relative to spec/data/api
}

// bundle merges the root files of a into one OpenAPI 3.1 document whose
// paths carry their full prefix (each file's basePath server variable is
// folded into its paths), so one document can hold /_matrix/client/v3/...,
// /_matrix/client/v1/..., /_matrix/client/versions and /.well-known/matrix/client.
func bundle(l *loader, a api) (map[string]any, error) {
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": a.Title, "version": "1.19"},
	}
	paths := map[string]any{}
	secSchemes := map[string]any{}
	files := append([]string(nil), a.Files...)
	sort.Strings(files)
	for _, f := range files {
		v, err := l.load(f)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: not an object", f)
		}
		if m["openapi"] != "3.1.0" {
			return nil, fmt.Errorf("%s: openapi %v, want 3.1.0", f, m["openapi"])
		}
		base, _ := dig(m, "servers", "0", "variables", "basePath", "default").(string)
		if base == "" {
			return nil, fmt.Errorf("%s: no servers[0].variables.basePath.default", f)
		}
		if sd, ok := dig(m, "components", "securitySchemes").(map[string]any); ok {
			for k, v := range sd {
				secSchemes[k] = v
			}
		}
		ps, _ := m["paths"].(map[string]any)
		for p, item := range ps {
			full := strings.TrimSuffix(base, "/") + p
			if _, dup := paths[full]; dup {
				return nil, fmt.Errorf("%s: path %s defined twice", f, full)
			}
			paths[full] = item
		}
	}
	doc["paths"] = paths
	comps := map[string]any{}
	if len(secSchemes) > 0 {
		comps["securitySchemes"] = secSchemes
	}
	doc["components"] = comps
	return doc, nil
}
