package conformance

import (
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// compareExample checks that every key of the documented example is
// present in the actual response with the same JSON type, recursively:
//
//   - In an object whose schema declares properties, each declared key of
//     the example must be present; undeclared keys of the example are
//     vendor extensions (org.example.custom.property) and are not required.
//   - In a map (a schema without declared properties), keys are data
//     (user IDs, key IDs, event IDs). An entry with the example's key is
//     compared with it; otherwise every actual entry must have the shape of
//     the example's entry, and an empty map where the example shows
//     entries is a missing key.
//   - In an array, some actual element must have the shape of each example
//     element (a device list holds the example's device among others).
//   - errcode must equal the example's: the error code is the contract.
//
// absent lists dotted paths the server deliberately leaves out (with why);
// they are neither required nor reported. It returns one line per problem.
func compareExample(example, actual any, schema *openapi3.SchemaRef, absent map[string]string) []string {
	var errs []string
	compareAt("", example, actual, schema, absent, &errs)
	return errs
}

func compareAt(path string, ex, act any, schema *openapi3.SchemaRef, absent map[string]string, errs *[]string) {
	if ex == nil {
		return
	}
	if jt, at := jsonType(ex), jsonType(act); jt != at {
		*errs = append(*errs, fmt.Sprintf("%s: example has %s, response has %s", orRoot(path), jt, at))
		return
	}
	switch e := ex.(type) {
	case map[string]any:
		a := act.(map[string]any)
		declared := properties(schema)
		keys := make([]string, 0, len(e))
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := join(path, k)
			if _, ok := absent[p]; ok {
				continue
			}
			if len(declared) > 0 {
				ps, isDeclared := declared[k]
				if !isDeclared {
					continue // an extension the example shows off
				}
				av, ok := a[k]
				if !ok {
					*errs = append(*errs, p+": missing")
					continue
				}
				if k == "errcode" && path == "" && av != e[k] {
					*errs = append(*errs, fmt.Sprintf("errcode: example has %v, response has %v", e[k], av))
					continue
				}
				compareAt(p, e[k], av, ps, absent, errs)
				continue
			}
			entry := additional(schema)
			if av, ok := a[k]; ok {
				compareAt(p, e[k], av, entry, absent, errs)
				continue
			}
			if len(a) == 0 {
				*errs = append(*errs, p+": missing (the response's map is empty)")
				continue
			}
			for ak, av := range a {
				compareAt(join(path, ak), e[k], av, entry, absent, errs)
			}
		}
	case []any:
		a := act.([]any)
		for i, item := range e {
			p := fmt.Sprintf("%s[%d]", path, i)
			if _, ok := absent[p]; ok {
				continue
			}
			if len(a) == 0 {
				*errs = append(*errs, p+": missing (the response's array is empty)")
				continue
			}
			var closest []string
			for _, av := range a {
				var sub []string
				compareAt(p, item, av, itemsOf(schema), absent, &sub)
				if len(sub) == 0 {
					closest = nil
					break
				}
				if closest == nil || len(sub) < len(closest) {
					closest = sub
				}
			}
			*errs = append(*errs, closest...)
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return "(body)"
	}
	return p
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, int, int64, uint64:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// properties returns the declared properties of s, across allOf parts.
func properties(s *openapi3.SchemaRef) map[string]*openapi3.SchemaRef {
	out := map[string]*openapi3.SchemaRef{}
	if s == nil || s.Value == nil {
		return out
	}
	for k, p := range s.Value.Properties {
		out[k] = p
	}
	for _, part := range s.Value.AllOf {
		for k, p := range properties(part) {
			if _, dup := out[k]; !dup {
				out[k] = p
			}
		}
	}
	return out
}

// additional returns the schema of a map's values, across allOf parts.
func additional(s *openapi3.SchemaRef) *openapi3.SchemaRef {
	if s == nil || s.Value == nil {
		return nil
	}
	if ap := s.Value.AdditionalProperties.Schema; ap != nil {
		return ap
	}
	for _, part := range s.Value.AllOf {
		if ap := additional(part); ap != nil {
			return ap
		}
	}
	return nil
}

func itemsOf(s *openapi3.SchemaRef) *openapi3.SchemaRef {
	if s == nil || s.Value == nil {
		return nil
	}
	if s.Value.Items != nil {
		return s.Value.Items
	}
	for _, part := range s.Value.AllOf {
		if it := itemsOf(part); it != nil {
			return it
		}
	}
	return nil
}

// summarize joins problems for a failure message.
func summarize(errs []string) string { return strings.Join(errs, "; ") }
