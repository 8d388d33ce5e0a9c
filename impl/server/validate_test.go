package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myelin-hs/myelin/gen/clientapi/fullspec"
	"github.com/myelin-hs/myelin/gen/clientapi/reqspec"
	fedfullspec "github.com/myelin-hs/myelin/gen/fedapi/fullspec"
	fedreqspec "github.com/myelin-hs/myelin/gen/fedapi/reqspec"
)

// Requests are validated under the request documents labelled OpenAPI 3.0
// (see as30): kin-openapi's built-in validator instead of its JSON Schema
// 2020-12 one, which compiles each schema anew for every value. These
// tests hold the documents to what makes the two agree.

// sameAs2020 are the schema keywords the built-in validator checks as JSON
// Schema 2020-12 does (type lists with "null" included). Not here, for
// example: const, patternProperties, propertyNames, prefixItems, if/then/
// else, $ref and a numeric exclusiveMinimum, which it ignores or reads as
// OpenAPI 3.0 does.
var sameAs2020 = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true,
	"allOf": true, "oneOf": true, "anyOf": true, "not": true, "items": true, "enum": true,
	"format": true, "pattern": true, "minimum": true, "maximum": true, "multipleOf": true,
	"minLength": true, "maxLength": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"minProperties": true, "maxProperties": true, "default": true, "title": true,
	// gen/specgen writes the empty schema {} as {"nullable": true}, which
	// JSON Schema 2020-12 ignores and the built-in validator needs to
	// accept null there as 2020-12 does.
	"nullable": true,
}

// keywordsOutside returns the keywords of schema (a schema as JSON) and
// its subschemas that are not in sameAs2020, as "path: keyword".
func keywordsOutside(path string, schema any) []string {
	obj, ok := schema.(map[string]any)
	if !ok {
		return nil // a boolean schema
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
		if !sameAs2020[k] {
			out = append(out, path+": "+k)
			continue
		}
		switch k {
		case "properties":
			for name, sub := range v.(map[string]any) {
				out = append(out, keywordsOutside(path+"."+name, sub)...)
			}
		case "allOf", "oneOf", "anyOf":
			for i, sub := range v.([]any) {
				out = append(out, keywordsOutside(fmt.Sprintf("%s.%s[%d]", path, k, i), sub)...)
			}
		case "items", "additionalProperties", "not":
			out = append(out, keywordsOutside(path+"."+k, v)...)
		}
	}
	return out
}

type validatedSchema struct {
	where  string
	schema *openapi3.Schema
}

// requestSchemas returns every parameter and body schema of the request
// documents the server validates with.
func requestSchemas(t *testing.T) []validatedSchema {
	t.Helper()
	var out []validatedSchema
	for _, get := range []func() (*openapi3.T, error){reqspec.GetSpec, fedreqspec.GetSpec} {
		doc, err := get()
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				where := method + " " + path
				for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
					if p.Value != nil && p.Value.Schema != nil && p.Value.Schema.Value != nil {
						out = append(out, validatedSchema{where + " parameter " + p.Value.Name, p.Value.Schema.Value})
					}
				}
				if op.RequestBody == nil || op.RequestBody.Value == nil {
					continue
				}
				for ct, mt := range op.RequestBody.Value.Content {
					if mt.Schema != nil && mt.Schema.Value != nil {
						out = append(out, validatedSchema{where + " body " + ct, mt.Schema.Value})
					}
				}
			}
		}
	}
	if len(out) < 50 {
		t.Fatalf("found only %d request schemas", len(out))
	}
	return out
}

func TestRequestSchemasUseOnlyKeywordsBothValidatorsCheckAlike(t *testing.T) {
	for _, s := range requestSchemas(t) {
		raw, err := json.Marshal(s.schema)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if bad := keywordsOutside("", v); len(bad) > 0 {
			t.Errorf("%s uses keywords the built-in validator does not check as JSON Schema 2020-12 does: %s",
				s.where, strings.Join(bad, ", "))
		}
	}
}

func TestTheKeywordCheckCatchesA31OnlyKeyword(t *testing.T) {
	var v any
	if err := json.Unmarshal([]byte(`{"type":"object","properties":{"a":{"allOf":[{"const":"x"}]}}}`), &v); err != nil {
		t.Fatal(err)
	}
	if got := keywordsOutside("", v); !slices.Equal(got, []string{".a.allOf[0]: const"}) {
		t.Fatalf("got %q", got)
	}
}

// disagreement validates value against schema with both validators and
// describes a disagreement ("" when they agree).
func disagreement(schema *openapi3.Schema, value any) string {
	legacy := schema.VisitJSON(value, openapi3.VisitAsRequest())
	js2020 := schema.VisitJSON(value, openapi3.VisitAsRequest(), openapi3.EnableJSONSchema2020())
	if (legacy == nil) == (js2020 == nil) {
		return ""
	}
	raw, _ := json.Marshal(value)
	return fmt.Sprintf("%s: built-in %v, 2020-12 %v", raw, firstLine(fmt.Sprint(legacy)), firstLine(fmt.Sprint(js2020)))
}

// mutations returns value with, at each place in it, the value replaced
// by one of each JSON type, an object's key removed and an unknown key
// added.
func mutations(value any) []any {
	replacements := []any{nil, true, float64(0), 1.5, float64(1 << 60), "", "s", []any{}, []any{"s"}, []any{float64(1)},
		map[string]any{}, map[string]any{"k": "v"}, map[string]any{"k": map[string]any{}}}
	var out []any
	out = append(out, replacements...)
	switch v := value.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			without := maps.Clone(v)
			delete(without, k)
			out = append(out, without)
			for _, m := range mutations(v[k]) {
				c := maps.Clone(v)
				c[k] = m
				out = append(out, c)
			}
		}
		extra := maps.Clone(v)
		extra["unknown_key"] = "x"
		out = append(out, extra)
	case []any:
		for i := range v {
			for _, m := range mutations(v[i]) {
				c := slices.Clone(v)
				c[i] = m
				out = append(out, c)
			}
		}
	}
	return out
}

// jsonBodies returns the application/json request bodies of the
// documents by operation ("METHOD path").
func jsonBodies(t *testing.T, docs ...func() (*openapi3.T, error)) map[string]*openapi3.MediaType {
	t.Helper()
	out := map[string]*openapi3.MediaType{}
	for _, get := range docs {
		doc, err := get()
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				if op.RequestBody == nil || op.RequestBody.Value == nil {
					continue
				}
				if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil {
					out[method+" "+path] = mt
				}
			}
		}
	}
	return out
}

// requestExamples returns the spec's request body examples (the full
// documents keep them) by operation ("METHOD path").
func requestExamples(t *testing.T) map[string][]any {
	t.Helper()
	out := map[string][]any{}
	for key, mt := range jsonBodies(t, fullspec.GetSpec, fedfullspec.GetSpec) {
		add := func(ex any) {
			if ex == nil {
				return
			}
			// Round-trip, so the value is what a decoded request holds.
			raw, err := json.Marshal(ex)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			out[key] = append(out[key], v)
		}
		add(mt.Example)
		for _, ex := range mt.Examples {
			if ex.Value != nil {
				add(ex.Value.Value)
			}
		}
		if mt.Schema != nil && mt.Schema.Value != nil {
			add(mt.Schema.Value.Example)
			for _, ex := range mt.Schema.Value.Examples {
				add(ex)
			}
		}
	}
	return out
}

func TestBothValidatorsGiveTheSameVerdictOnTheSpecsRequestExamplesAndTheirMutations(t *testing.T) {
	examples := requestExamples(t)
	bodies, checked := 0, 0
	for key, mt := range jsonBodies(t, reqspec.GetSpec, fedreqspec.GetSpec) {
		if mt.Schema == nil || mt.Schema.Value == nil {
			continue
		}
		bodies++
		values := []any{}
		for _, ex := range examples[key] {
			values = append(values, ex)
			values = append(values, mutations(ex)...)
		}
		values = append(values, mutations(map[string]any{})...)
		var bad []string
		for _, v := range values {
			checked++
			if d := disagreement(mt.Schema.Value, v); d != "" {
				bad = append(bad, d)
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s: the validators disagree on %d of %d bodies:\n%s", key, len(bad), len(values), strings.Join(bad, "\n"))
		}
	}
	if bodies < 30 || checked < 1500 {
		t.Fatalf("checked only %d values of %d request bodies", checked, bodies)
	}
	t.Logf("%d values of %d request bodies", checked, bodies)
}

func TestTheVerdictComparisonCatchesAKeywordOnly2020Checks(t *testing.T) {
	var s openapi3.Schema
	if err := json.Unmarshal([]byte(`{"type":"object","properties":{"a":{"const":"x"}}}`), &s); err != nil {
		t.Fatal(err)
	}
	if d := disagreement(&s, map[string]any{"a": "y"}); d == "" {
		t.Fatal("a value only JSON Schema 2020-12 refuses was not reported")
	}
}
