package main

import (
	"maps"
	"strings"
)

// The server validates requests against an embedded copy of each document
// (gen/<api>/reqspec), and everything it parses stays on its heap for the
// life of the process: the prose (description, summary), the examples, the
// x-* annotations and the responses, which request validation never reads,
// were about two thirds of the parsed document. requestsOnly makes that
// copy; the full document (gen/<api>/openapi.yaml, embedded in
// gen/<api>/fullspec) stays what oapi-codegen, the conformance suite
// (examples, descriptions) and the response checks of the tests read.

// dropKeywords are removed wherever they are keywords of an OpenAPI or
// JSON Schema object (never where they name a property).
var dropKeywords = map[string]bool{
	"description": true, "summary": true, "example": true, "examples": true,
	"externalDocs": true, "title": true, "tags": true, "deprecated": true,
}

// nameMaps are keywords whose value maps names (properties, media types,
// paths, status codes, scheme names …) to objects: their keys are kept
// whatever they are, their values are objects again.
var nameMaps = map[string]bool{
	"properties": true, "patternProperties": true, "$defs": true, "definitions": true,
	"dependentSchemas": true, "schemas": true, "securitySchemes": true, "paths": true,
	"content": true, "headers": true, "requestBodies": true,
	"encoding": true, "callbacks": true, "links": true, "variables": true,
}

// dataKeywords hold values, not objects: copied as they are.
var dataKeywords = map[string]bool{
	"enum": true, "const": true, "default": true, "security": true, "scopes": true,
	"mapping": true, "required": true, "type": true,
}

// operationKeys are the methods of a path item.
var operationKeys = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true, "options": true,
	"head": true, "patch": true, "trace": true,
}

// requestsOnly returns a copy of doc with only what validating a request
// needs: paths, their operations' parameters, request bodies and security,
// and the schemas those use, without prose, examples, annotations or
// responses.
func requestsOnly(doc map[string]any) map[string]any {
	out := strip(doc).(map[string]any)
	if paths, ok := out["paths"].(map[string]any); ok {
		for _, item := range paths {
			item, ok := item.(map[string]any)
			if !ok {
				continue
			}
			for method, op := range item {
				if op, ok := op.(map[string]any); ok && operationKeys[method] {
					// An operation's responses are required by OpenAPI;
					// kin-openapi's request validation never reads them.
					op["responses"] = map[string]any{}
				}
			}
		}
	}
	delete(out, "webhooks")
	out["info"] = deepCopy(doc["info"])
	spellOutAnyValue(out, false)
	return out
}

// anyValue stands for the empty schema {}: {"nullable": true}. Both accept
// every value, null included, under the validator the server uses,
// kin-openapi's built-in one (see impl/server's as30), which reads {} as
// OpenAPI 3.0 does and refuses null; JSON Schema 2020-12 ignores the
// keyword, so under it the two are {} alike. (A list of every type would
// say the same in 3.1's own words, but oapi-codegen, which embeds this
// document, cannot type such a list.)
var anyValue = map[string]any{"nullable": true}

// schemaKeywords hold one schema; schemaLists a list of schemas; schemaMaps
// map names to schemas.
var (
	schemaKeywords = map[string]bool{"schema": true, "items": true, "additionalProperties": true, "not": true,
		"if": true, "then": true, "else": true, "contains": true, "propertyNames": true, "contentSchema": true}
	schemaLists = map[string]bool{"allOf": true, "oneOf": true, "anyOf": true, "prefixItems": true}
	schemaMaps  = map[string]bool{"properties": true, "patternProperties": true, "$defs": true,
		"dependentSchemas": true, "schemas": true}
)

// spellOutAnyValue replaces, in place, every empty schema under v (v
// itself when isSchema) by anyValue.
func spellOutAnyValue(v any, isSchema bool) any {
	switch t := v.(type) {
	case map[string]any:
		if isSchema && len(t) == 0 {
			return maps.Clone(anyValue)
		}
		for k, sv := range t {
			switch {
			case schemaKeywords[k]:
				t[k] = spellOutAnyValue(sv, true)
			case schemaLists[k]:
				if l, ok := sv.([]any); ok {
					for i := range l {
						l[i] = spellOutAnyValue(l[i], true)
					}
				}
			case schemaMaps[k]:
				if m, ok := sv.(map[string]any); ok {
					for name := range m {
						m[name] = spellOutAnyValue(m[name], true)
					}
				}
			case dataKeywords[k]:
			default:
				t[k] = spellOutAnyValue(sv, false)
			}
		}
	case []any:
		for i := range t {
			t[i] = spellOutAnyValue(t[i], false)
		}
	}
	return v
}

// strip copies an object (a map whose keys are keywords) without the
// dropped keywords; lists are lists of objects (allOf, parameters …).
func strip(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, sv := range t {
			switch {
			case dropKeywords[k] || strings.HasPrefix(k, "x-"):
			case dataKeywords[k]:
				out[k] = deepCopy(sv)
			case nameMaps[k]:
				names, ok := sv.(map[string]any)
				if !ok { // e.g. a list of parameters
					out[k] = strip(sv)
					continue
				}
				m := make(map[string]any, len(names))
				for name, obj := range names {
					m[name] = strip(obj)
				}
				out[k] = m
			default:
				out[k] = strip(sv)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, sv := range t {
			out[i] = strip(sv)
		}
		return out
	default:
		return v
	}
}
