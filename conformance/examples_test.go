package conformance

import (
	"encoding/json"
	"sort"

	"github.com/getkin/kin-openapi/openapi3"
)

// exampleOf returns the example the spec documents for a value of schema
// s, assembled as Matrix's documentation tooling does: the schema's own
// example when it has one; otherwise an object made of its properties'
// examples (properties without one are left out), an array of one example
// item, and the parts of an allOf merged. ok is false when the spec
// documents nothing for s.
func exampleOf(s *openapi3.SchemaRef) (v any, ok bool) {
	if s == nil || s.Value == nil {
		return nil, false
	}
	sc := s.Value
	if sc.Example != nil {
		return sc.Example, true
	}
	if len(sc.AllOf) > 0 {
		merged := map[string]any{}
		for _, part := range sc.AllOf {
			pv, pok := exampleOf(part)
			if !pok {
				continue
			}
			obj, isObj := pv.(map[string]any)
			if !isObj {
				return pv, true // a non-object part documents the whole value
			}
			for k, x := range obj {
				merged[k] = x // later parts refine the base (rate_limited over error)
			}
			ok = true
		}
		if ok {
			return merged, true
		}
	}
	if len(sc.Properties) > 0 {
		obj := map[string]any{}
		for name, p := range sc.Properties {
			if pv, pok := exampleOf(p); pok {
				obj[name] = pv
			}
		}
		if len(obj) > 0 {
			return obj, true
		}
	}
	if sc.Items != nil {
		if iv, iok := exampleOf(sc.Items); iok {
			return []any{iv}, true
		}
	}
	return nil, false
}

// requestBodyExample is the documented request body of op: the media
// type's whole-body example, else the schema's.
func requestBodyExample(op *openapi3.Operation) (map[string]any, bool) {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		return nil, false
	}
	mt := op.RequestBody.Value.Content.Get("application/json")
	if mt == nil {
		return nil, false
	}
	v := mediaExample(mt)
	if v == nil {
		var ok bool
		if v, ok = exampleOf(mt.Schema); !ok {
			return nil, false
		}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	return clone(obj), true
}

// responseExample is the documented body of op's response with status
// code (e.g. "200"), or nil when the spec gives none.
func responseExample(op *openapi3.Operation, code string) (any, *openapi3.SchemaRef) {
	r := op.Responses.Value(code)
	if r == nil || r.Value == nil {
		return nil, nil
	}
	mt := r.Value.Content.Get("application/json")
	if mt == nil {
		return nil, nil
	}
	if ex := mediaExample(mt); ex != nil {
		return ex, mt.Schema
	}
	v, _ := exampleOf(mt.Schema)
	return v, mt.Schema
}

// mediaExample is a media type's whole-body example: `example`, or the
// first of its named `examples` (OpenAPI 3.1 files name them "request",
// "response"); nil when there is none.
func mediaExample(mt *openapi3.MediaType) any {
	if mt.Example != nil {
		return mt.Example
	}
	names := make([]string, 0, len(mt.Examples))
	for name := range mt.Examples {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if ex := mt.Examples[name]; ex != nil && ex.Value != nil && ex.Value.Value != nil {
			return ex.Value.Value
		}
	}
	return nil
}

// clone copies a JSON object deeply, so a case can change its request
// without touching the spec's example.
func clone(obj map[string]any) map[string]any {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err) // examples come from a JSON document
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
