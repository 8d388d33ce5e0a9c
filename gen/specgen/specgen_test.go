package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const specDir = "../../spec"

func TestVendoredFilesAreByteForByteUpstream(t *testing.T) {
	f, err := os.Open(filepath.Join(specDir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("bad SHA256SUMS line %q", sc.Text())
		}
		path = strings.TrimPrefix(path, "./")
		listed[path] = true
		b, err := os.ReadFile(filepath.Join(specDir, path))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s differs from upstream v1.19: fix-ups belong in overlays, never in spec/", path)
		}
	}
	err = filepath.Walk(filepath.Join(specDir, "data"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(specDir, p)
		if !listed[filepath.ToSlash(rel)] {
			t.Errorf("%s is not in SHA256SUMS: every vendored file is listed with its upstream hash", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefSiblingsWinOverTheReferencedObject(t *testing.T) {
	dir := t.TempDir()
	api := filepath.Join(dir, "data", "api", "x")
	os.MkdirAll(api, 0o755)
	os.WriteFile(filepath.Join(api, "base.yaml"), []byte("type: object\ndescription: base\nproperties: {a: {type: string}}\n"), 0o644)
	os.WriteFile(filepath.Join(api, "top.yaml"), []byte("$ref: base.yaml\ndescription: sibling\n"), 0o644)
	v, err := newLoader(dir).load("x/top.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if dig(v, "description") != "sibling" || dig(v, "properties", "a", "type") != "string" {
		t.Fatalf("got %v: the referenced object's keys are taken and the siblings win", v)
	}
}

func TestRefsInsideExamplesAreResolvedRelativeToTheExamplesDirectory(t *testing.T) {
	l := newLoader(specDir)
	v, err := l.load("server-server/transactions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	walk(v, func(m map[string]any) {
		if pdus, ok := m["pdus"].([]any); ok && len(pdus) == 1 {
			if e, ok := pdus[0].(map[string]any); ok && e["room_id"] != nil {
				found = true
			}
		}
		if _, ok := m["$ref"]; ok {
			t.Errorf("unresolved $ref left: %v", m["$ref"])
		}
	})
	if !found {
		t.Fatal("the transaction example's pdus[0] $ref to minimal_pdu.json was not inlined")
	}
}

func TestRefsWithinAFileAndWithFragmentsAreResolved(t *testing.T) {
	l := newLoader(specDir)
	v, err := l.load("client-server/capabilities.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if dig(v, "components", "securitySchemes", "accessTokenBearer", "scheme") != "bearer" {
		t.Fatal("security.yaml#/accessTokenBearer was not followed")
	}
	walk(v, func(m map[string]any) {
		if _, ok := m["$ref"]; ok {
			t.Errorf("unresolved $ref left: %v", m["$ref"])
		}
	})
}

func TestEveryOverlayAndAbsentRefIsNeededAndDocumented(t *testing.T) {
	used := map[string]bool{}
	for _, a := range apis {
		l := newLoader(specDir)
		doc, err := bundle(l, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyOverlays(l, a, doc); err != nil {
			t.Fatalf("%s: %v", a.Name, err)
		}
		for k := range l.usedAbsent {
			used[k] = true
		}
	}
	for _, o := range overlays {
		if o.Name == "" || len(o.Why) < 40 || len(o.APIs) == 0 {
			t.Errorf("overlay %q must be named, documented and scoped", o.Name)
		}
	}
	for _, a := range absentRefs {
		if len(a.Why) < 20 {
			t.Errorf("absent ref %s must say why", a.Target)
		}
		if !used[a.Target] {
			t.Errorf("absent ref %s is referenced by no vendored file: drop it", a.Target)
		}
	}
}

func TestOverlaysFailLoudlyWhenUpstreamIsFixed(t *testing.T) {
	clean := map[string]any{"paths": map[string]any{}, "components": map[string]any{}}
	for _, o := range overlays {
		if o.Name == "edu-schemas" {
			continue // adds schemas; it checks its own input
		}
		if err := o.Apply(newLoader(specDir), clean); err == nil {
			t.Errorf("overlay %s applied to a document without the defect: it would linger unnoticed", o.Name)
		}
	}
}

func TestPatternKeyedMapsKeepTheirValueType(t *testing.T) {
	doc, _, err := build(specDir, apis[0])
	if err != nil {
		t.Fatal(err)
	}
	ap, _ := dig(doc, "paths", "/_matrix/client/v3/keys/query", "post", "responses", "200", "content",
		"application/json", "schema", "properties", "master_keys", "additionalProperties").(map[string]any)
	if ap == nil {
		t.Fatal("master_keys lost its value schema")
	}
	walk(doc, func(m map[string]any) {
		if _, ok := m["patternProperties"]; ok {
			t.Error("a patternProperties map is left")
		}
	})
}

func TestKeyQueriesAcceptANullDeviceList(t *testing.T) {
	for _, a := range apis {
		doc, _, err := build(specDir, a)
		if err != nil {
			t.Fatal(err)
		}
		if nullableQueryLists(doc) != 0 {
			t.Errorf("%s: a key query device list is still not nullable", a.Name)
		}
	}
}

func TestVersionTableReadsTheSpecAnnotations(t *testing.T) {
	doc, _, err := build(specDir, apis[0])
	if err != nil {
		t.Fatal(err)
	}
	ops, err := operations(doc)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]specOperation{}
	for _, o := range ops {
		byID[o.ID] = o
	}
	if byID["uploadCrossSigningKeys"].AddedIn != "1.1" {
		t.Errorf("uploadCrossSigningKeys added in %q, want 1.1", byID["uploadCrossSigningKeys"].AddedIn)
	}
	var refresh bool
	for _, c := range byID["login"].Changes {
		if c.Version == "1.3" && strings.Contains(c.What, "refresh_token") {
			refresh = true
		}
	}
	if !refresh {
		t.Errorf("login's 1.3 refresh_token change not found in %v", byID["login"].Changes)
	}
	if !versionLess("1.2", "1.10") || versionLess("1.10", "1.9") {
		t.Error("versions must order numerically")
	}
}

func TestCommittedGeneratedFilesAreUpToDate(t *testing.T) {
	for _, a := range apis {
		doc, got, err := build(specDir, a)
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
		req, err := buildReqSpec(doc)
		if err != nil {
			t.Fatal(err)
		}
		want, err = os.ReadFile(filepath.Join("..", a.Name, "reqspec", "openapi.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(req, want) {
			t.Errorf("gen/%s/reqspec/openapi.yaml is stale: run go generate ./...", a.Name)
		}
		src, err := versionTable(a, doc)
		if err != nil {
			t.Fatal(err)
		}
		want, err = os.ReadFile(filepath.Join("..", a.Name, "specversions.gen.go"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src, want) {
			t.Errorf("gen/%s/specversions.gen.go is stale: run go generate ./...", a.Name)
		}
	}
}

func TestEditingTheSpecChangesTheOutput(t *testing.T) {
	dir := t.TempDir()
	if err := copyTree(specDir, dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "data/api/client-server/whoami.yaml")
	b, _ := os.ReadFile(p)
	edited := strings.Replace(string(b), "operationId: getTokenOwner", "operationId: getTokenOwnerRenamed", 1)
	if edited == string(b) {
		t.Fatal("test fixture: operationId not found")
	}
	os.WriteFile(p, []byte(edited), 0o644)
	_, before, err := build(specDir, apis[0])
	if err != nil {
		t.Fatal(err)
	}
	_, after, err := build(dir, apis[0])
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

func TestRequestValidationCopyDropsProseExamplesAndResponsesButKeepsPropertiesSoNamed(t *testing.T) {
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "T", "version": "1"},
		"paths": map[string]any{
			"/x": map[string]any{
				"summary": "path prose",
				"post": map[string]any{
					"operationId":            "x",
					"description":            "operation prose",
					"x-addedInMatrixVersion": "1.1",
					"parameters": []any{map[string]any{
						"in": "query", "name": "description", "description": "parameter prose",
						"example": "e", "schema": map[string]any{"type": "string", "enum": []any{"description", "title"}},
					}},
					"requestBody": map[string]any{"content": map[string]any{"application/json": map[string]any{
						"example": map[string]any{"title": "t"},
						"schema": map[string]any{
							"type": "object", "title": "Body", "description": "schema prose",
							"required": []any{"title"},
							"properties": map[string]any{
								"title":       map[string]any{"type": "string", "description": "a property named title"},
								"description": map[string]any{"type": "string", "default": map[string]any{"description": "kept"}},
								"examples":    map[string]any{"type": "array", "items": map[string]any{"type": "string", "example": "e"}},
							},
						},
					}}},
					"responses": map[string]any{"200": map[string]any{"description": "ok"}},
					"security":  []any{map[string]any{"accessTokenBearer": []any{}}},
				},
			},
		},
	}
	got := requestsOnly(doc)
	op := dig(got, "paths", "/x", "post").(map[string]any)
	for _, k := range []string{"description", "x-addedInMatrixVersion"} {
		if _, ok := op[k]; ok {
			t.Errorf("operation keeps %s", k)
		}
	}
	if _, ok := dig(got, "paths", "/x").(map[string]any)["summary"]; ok {
		t.Error("path item keeps its summary")
	}
	if r := op["responses"].(map[string]any); len(r) != 0 {
		t.Errorf("responses kept: %v", r)
	}
	if op["operationId"] != "x" || op["security"] == nil {
		t.Errorf("operationId or security lost: %v", op)
	}
	param := op["parameters"].([]any)[0].(map[string]any)
	if param["name"] != "description" || param["description"] != nil || param["example"] != nil {
		t.Errorf("parameter: %v", param)
	}
	if e := dig(param, "schema", "enum").([]any); len(e) != 2 || e[0] != "description" {
		t.Errorf("enum values changed: %v", e)
	}
	media := dig(got, "paths", "/x", "post", "requestBody", "content", "application/json").(map[string]any)
	if _, ok := media["example"]; ok {
		t.Error("media type keeps its example")
	}
	schema := media["schema"].(map[string]any)
	if schema["title"] != nil || schema["description"] != nil || schema["required"].([]any)[0] != "title" {
		t.Errorf("schema: %v", schema)
	}
	props := schema["properties"].(map[string]any)
	for _, name := range []string{"title", "description", "examples"} {
		if props[name] == nil {
			t.Errorf("property %q dropped", name)
		}
	}
	if dig(props, "title", "description") != nil || dig(props, "examples", "items", "example") != nil {
		t.Errorf("prose or examples kept inside properties: %v", props)
	}
	if dig(props, "description", "default", "description") != "kept" {
		t.Errorf("a default value was stripped: %v", props["description"])
	}
	if dig(got, "info", "title") != "T" {
		t.Error("info changed")
	}
	if dig(doc, "paths", "/x", "post", "description") != "operation prose" {
		t.Error("the full document was modified")
	}
}

func TestRequestValidationCopySpellsTheEmptySchemaSoNullPassesItAsIn31(t *testing.T) {
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "T", "version": "1"},
		"paths": map[string]any{"/x": map[string]any{"post": map[string]any{
			"requestBody": map[string]any{"content": map[string]any{"application/json": map[string]any{
				"schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"auth":  map[string]any{"type": "object", "additionalProperties": map[string]any{"description": "anything"}},
						"any":   map[string]any{},
						"edus":  map[string]any{"type": "array", "items": map[string]any{"allOf": []any{map[string]any{"type": "object"}, map[string]any{}}}},
						"typed": map[string]any{"type": "string"},
					},
					"default": map[string]any{"auth": map[string]any{}},
				},
			}}},
			"responses": map[string]any{"200": map[string]any{"description": "ok"}},
			"security":  []any{map[string]any{}},
		}}},
	}
	got := requestsOnly(doc)
	op := dig(got, "paths", "/x", "post").(map[string]any)
	props := dig(op, "requestBody", "content", "application/json", "schema", "properties").(map[string]any)
	for _, at := range [][]string{{"auth", "additionalProperties"}, {"any"}} {
		if v := dig(props, at...); !reflect.DeepEqual(v, map[string]any{"nullable": true}) {
			t.Errorf("%v: got %v, want {nullable: true}", at, v)
		}
	}
	if v := dig(props, "edus", "items", "allOf").([]any)[1]; !reflect.DeepEqual(v, map[string]any{"nullable": true}) {
		t.Errorf("allOf's empty schema: got %v", v)
	}
	if v := dig(props, "typed"); !reflect.DeepEqual(v, map[string]any{"type": "string"}) {
		t.Errorf("a typed schema changed: %v", v)
	}
	// Empty objects that are not schemas stay as they are.
	if v := dig(op, "requestBody", "content", "application/json", "schema", "default", "auth"); !reflect.DeepEqual(v, map[string]any{}) {
		t.Errorf("a default value changed: %v", v)
	}
	if v := op["security"].([]any)[0]; !reflect.DeepEqual(v, map[string]any{}) {
		t.Errorf("the optional security requirement changed: %v", v)
	}
}
