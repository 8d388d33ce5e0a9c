package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRefSiblingsWinOverTheReferencedObject(t *testing.T) {
	l := newLoader("../../spec")
	v, err := l.load("client-server/definitions/errors/rate_limited.yaml")
	if err != nil {
		t.Fatal(err)
	}
	props := v.(map[string]any)["properties"].(map[string]any)
	if props["retry_after_ms"] == nil {
		t.Fatal("rate_limited.yaml lost retry_after_ms: $ref siblings must be merged over the target")
	}
	if props["errcode"] == nil || props["error"] == nil {
		t.Fatal("rate_limited.yaml lost the error.yaml properties")
	}
}

func TestRefsInsideExamplesAreResolvedRelativeToTheExamplesDirectory(t *testing.T) {
	l := newLoader("../../spec")
	v, err := l.load("server-server/transactions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	walk(v, func(m map[string]any) {
		if ex, ok := m["example"].(map[string]any); ok {
			if edus, ok := ex["edus"].([]any); ok && len(edus) == 1 {
				if e, ok := edus[0].(map[string]any); ok && e["edu_type"] != nil {
					found = true
				}
			}
		}
		if _, ok := m["$ref"]; ok {
			t.Errorf("unresolved $ref left: %v", m["$ref"])
		}
	})
	if !found {
		t.Fatal("the transaction example's edus[0] $ref to edu.json was not inlined")
	}
}

func TestEveryOverlayFindsWhatItFixes(t *testing.T) {
	for _, a := range apis {
		l := newLoader("../../spec")
		doc, err := bundle(l, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyOverlays(l, a, doc); err != nil {
			t.Fatalf("%s: %v", a.Name, err)
		}
	}
	for _, o := range overlays {
		if o.Name == "" || len(o.Why) < 40 || len(o.APIs) == 0 {
			t.Errorf("overlay %q must be named, documented and scoped", o.Name)
		}
	}
}

func TestOverlaysFailLoudlyWhenUpstreamIsFixed(t *testing.T) {
	clean := map[string]any{"paths": map[string]any{}, "definitions": map[string]any{"X": map[string]any{"type": "string"}}}
	for _, o := range overlays {
		if o.Name == "device-list-update-edu-schema" {
			continue // adds a schema; it checks its own input
		}
		if err := o.Apply(newLoader("../../spec"), clean); err == nil {
			t.Errorf("overlay %s applied to a document without the defect: it would linger unnoticed", o.Name)
		}
	}
}

func TestAuthDataAcceptsStringCredentials(t *testing.T) {
	doc := map[string]any{"a": map[string]any{"title": "Authentication Data", "type": "object",
		"additionalProperties": map[string]any{"type": "object"}}}
	if n := relaxAuthData(doc); n != 1 {
		t.Fatalf("relaxed %d schemas", n)
	}
	if doc["a"].(map[string]any)["additionalProperties"] != true {
		t.Fatal("additionalProperties must allow any value")
	}
}

func TestAuthDataAllowsASessionOnlyRetry(t *testing.T) {
	doc := map[string]any{"a": map[string]any{"title": "Authentication Data", "type": "object",
		"required": []any{"type"}}}
	if n := authDataTypeOptional(doc); n != 1 {
		t.Fatalf("relaxed %d schemas", n)
	}
	if _, ok := doc["a"].(map[string]any)["required"]; ok {
		t.Fatal("type must no longer be required")
	}
}

func TestCommittedOpenAPIDocumentsAreUpToDate(t *testing.T) {
	for _, a := range apis {
		got, err := build("../../spec", a)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", a.Name, "openapi.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("gen/%s/openapi.yaml is stale: run go generate ./...", a.Name)
		}
	}
}

func TestEditingTheSpecChangesTheOutput(t *testing.T) {
	dir := t.TempDir()
	if err := copyTree("../../spec", dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "client-server/whoami.yaml")
	b, _ := os.ReadFile(p)
	edited := strings.Replace(string(b), "operationId: getTokenOwner", "operationId: getTokenOwnerRenamed", 1)
	if edited == string(b) {
		t.Fatal("test fixture: operationId not found")
	}
	os.WriteFile(p, []byte(edited), 0o644)
	a := apis[0]
	before, err := build("../../spec", a)
	if err != nil {
		t.Fatal(err)
	}
	after, err := build(dir, a)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) || !bytes.Contains(after, []byte("getTokenOwnerRenamed")) {
		t.Fatal("an edit of the vendored spec did not reach the generated document")
	}
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
