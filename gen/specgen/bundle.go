package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// loader reads YAML/JSON files of the vendored spec and inlines every $ref.
//
// Matrix's own documentation tooling resolves references by shallow merge:
// the referenced object's keys are taken first and the keys written next to
// the $ref ("siblings") win. A plain JSON-Reference resolver would drop the
// siblings (errors/rate_limited.yaml would lose retry_after_ms), so the
// bundler implements the Matrix semantics.
type loader struct {
	root  string // the spec/ directory
	cache map[string]any
}

func newLoader(root string) *loader {
	return &loader{root: root, cache: map[string]any{}}
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
	if err := yaml.Unmarshal(raw, &node); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	node = normalize(node)
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
			target, err := l.refTarget(ref, file, inExample)
			if err != nil {
				return nil, err
			}
			resolved, err := l.loadStack(target, stack)
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

func (l *loader) refTarget(ref, file string, inExample bool) (string, error) {
	if strings.HasPrefix(ref, "#") || strings.Contains(ref, "://") {
		return "", fmt.Errorf("%s: unsupported $ref %q (only relative file references occur in the Matrix spec)", file, ref)
	}
	cand := filepath.Join(filepath.Dir(file), ref)
	if _, err := os.Stat(filepath.Join(l.root, cand)); err == nil {
		return cand, nil
	}
	if inExample {
		// examples/*.json reference each other relative to the examples dir.
		api := strings.SplitN(filepath.ToSlash(file), "/", 2)[0]
		alt := filepath.Join(api, "examples", ref)
		if _, err := os.Stat(filepath.Join(l.root, alt)); err == nil {
			return alt, nil
		}
	}
	return "", fmt.Errorf("%s: $ref %q: no such file", file, ref)
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
	Name    string   // output directory under gen/ and Go package name
	Title   string   // info.title of the bundled document
	Files   []string // root Swagger files, relative to spec/
	Version string   // substituted for %CLIENT_MAJOR_VERSION%
}

// bundle merges the root files of a into one Swagger 2.0 document whose
// paths carry their full prefix (basePath is folded into each path), so one
// document can hold /_matrix/client/v3/..., /_matrix/client/versions and
// /.well-known/matrix/client.
func bundle(l *loader, a api) (map[string]any, error) {
	doc := map[string]any{
		"swagger":  "2.0",
		"info":     map[string]any{"title": a.Title, "version": "1.0.0"},
		"consumes": []any{"application/json"},
		"produces": []any{"application/json"},
	}
	paths := map[string]any{}
	secDefs := map[string]any{}
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
		base, _ := m["basePath"].(string)
		base = substituteVersion(base, a.Version)
		if sd, ok := m["securityDefinitions"].(map[string]any); ok {
			for k, v := range sd {
				secDefs[k] = v
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
	if len(secDefs) > 0 {
		doc["securityDefinitions"] = secDefs
	}
	return doc, nil
}

// substituteVersion implements the "basepath-version" overlay: the spec's
// build tooling replaces %CLIENT_MAJOR_VERSION% when it renders the docs.
func substituteVersion(s, version string) string {
	return strings.ReplaceAll(s, "%CLIENT_MAJOR_VERSION%", version)
}
