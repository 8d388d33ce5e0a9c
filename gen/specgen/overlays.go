package main

import (
	"fmt"
)

// An overlay is a named, documented fix-up applied to a bundled Swagger 2.0
// document before it is converted to OpenAPI 3. The vendored files under
// spec/ are never edited: re-vendoring a newer upstream is a copy plus a
// review of this list. Every overlay fails loudly when it no longer finds
// what it fixes, so a stale entry is noticed instead of silently kept.
type overlay struct {
	Name string
	Why  string
	// APIs the overlay applies to (by api.Name).
	APIs  []string
	Apply func(l *loader, doc map[string]any) error
}

var overlays = []overlay{
	{
		Name: "empty-properties-list",
		Why:  "transaction.yaml declares a PDU as `properties: []`; properties must be an object. `{}` says the same (no declared properties).",
		APIs: []string{"fedapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(rewriteEmptyProperties(doc), "`properties: []`")
		},
	},
	{
		Name: "auth-data-any-values",
		Why: "auth_data.yaml types its additional properties as objects, but every real UIA stage sends strings " +
			"(`\"password\": \"…\"`, `\"token\": \"…\"`) or nested objects (`identifier`); with the upstream schema every real " +
			"request fails validation. Any JSON value is allowed.",
		APIs: []string{"clientapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(relaxAuthData(doc), "the Authentication Data schema")
		},
	},
	{
		Name: "auth-data-session-only",
		Why: "auth_data.yaml requires `type`, but the spec's prose has the client retry with an auth dict containing only " +
			"the session once a stage was completed out of band (the fallback web pages, email links); Synapse accepts that. " +
			"`type` stays documented but is no longer required.",
		APIs: []string{"clientapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(authDataTypeOptional(doc), "a required `type` in the Authentication Data schema")
		},
	},
	{
		Name: "type-list-any",
		Why: "keys.yaml and user_keys.yaml type one-time keys as `type: [string, object]` (a bare curve25519 key or a " +
			"signed key object). A list of types is OpenAPI 3.1 only; the schema's `type` is dropped, which allows any value.",
		APIs:  []string{"clientapi", "fedapi"},
		Apply: func(_ *loader, doc map[string]any) error { return expect(dropTypeLists(doc), "`type: [...]`") },
	},
	{
		Name: "client-device-fields-always-present",
		Why: "client_device.yaml lets display_name, last_seen_ip and last_seen_ts be absent, but matrix-nio rejects a whole " +
			"device list when any device lacks one of them; Synapse sends null. They are made required and nullable, so the " +
			"generated models always emit the keys and response validation accepts null.",
		APIs: []string{"clientapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(clientDeviceAlwaysPresent(doc), "the Device schema")
		},
	},
	{
		Name: "whoami-device-and-guest",
		Why: "whoami.yaml (r0.6.1) returns only user_id; spec v1.1 added device_id and v1.2 is_guest, which clients (and " +
			"the issue tracker) expect. Both are added as optional properties of the 200 response.",
		APIs:  []string{"clientapi"},
		Apply: addWhoamiFields,
	},
	{
		Name: "key-server-without-keyid",
		Why: "keys_server.yaml's {keyId} path parameter is optional (`required: false`, deprecated) and the trailing slash " +
			"optional, but OpenAPI 3 path parameters are always required. Servers fetch `/_matrix/key/v2/server`, so that " +
			"path is added as its own operation (getServerKeys) with the same responses.",
		APIs:  []string{"fedapi"},
		Apply: addServerKeysWithoutKeyID,
	},
	{
		Name: "device-list-update-edu-schema",
		Why: "The m.device_list_update EDU schema is referenced by no path (EDUs travel inside /send as opaque objects). " +
			"It is added to the document's definitions so a typed model is generated for it. It declares `type: enum` for " +
			"edu_type, which is not a JSON Schema type and which kin-openapi rejects; the values are strings, so it becomes `type: string`.",
		APIs: []string{"fedapi"},
		Apply: func(l *loader, doc map[string]any) error {
			v, err := l.load("server-server/definitions/event-schemas/m.device_list_update.yaml")
			if err != nil {
				return err
			}
			if rewriteEnumType(v) == 0 {
				return fmt.Errorf("expected `type: enum` in the EDU schema")
			}
			defs, _ := doc["definitions"].(map[string]any)
			if defs == nil {
				defs = map[string]any{}
				doc["definitions"] = defs
			}
			defs["DeviceListUpdateEdu"] = v
			return nil
		},
	},
}

// dig follows keys through nested objects; nil when any step is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func expect(n int, what string) error {
	if n == 0 {
		return fmt.Errorf("found no %s to fix: upstream may have fixed it; review and drop this overlay", what)
	}
	return nil
}

// walk calls fn for every object in the tree.
func walk(v any, fn func(m map[string]any)) {
	switch t := v.(type) {
	case map[string]any:
		fn(t)
		for _, sv := range t {
			walk(sv, fn)
		}
	case []any:
		for _, sv := range t {
			walk(sv, fn)
		}
	}
}

func rewriteEnumType(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if m["type"] == "enum" {
			if _, ok := m["enum"]; ok {
				m["type"] = "string"
				n++
			}
		}
	})
	return n
}

func rewriteEmptyProperties(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if l, ok := m["properties"].([]any); ok && len(l) == 0 {
			m["properties"] = map[string]any{}
			n++
		}
	})
	return n
}

func dropTypeLists(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if _, ok := m["type"].([]any); ok {
			delete(m, "type")
			n++
		}
	})
	return n
}

var clientDeviceNullable = []string{"display_name", "last_seen_ip", "last_seen_ts"}

func clientDeviceAlwaysPresent(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if m["title"] != "Device" {
			return
		}
		props, ok := m["properties"].(map[string]any)
		if !ok || props["device_id"] == nil || props["last_seen_ts"] == nil {
			return
		}
		req := []any{"device_id"}
		for _, name := range clientDeviceNullable {
			if p, ok := props[name].(map[string]any); ok {
				p["x-nullable"] = true
				req = append(req, name)
			}
		}
		m["required"] = req
		n++
	})
	return n
}

func addWhoamiFields(_ *loader, doc map[string]any) error {
	props, _ := dig(doc, "paths", "/_matrix/client/v3/account/whoami", "get", "responses", "200", "schema", "properties").(map[string]any)
	if props == nil || props["user_id"] == nil {
		return fmt.Errorf("GET /account/whoami 200 schema with user_id not found")
	}
	if props["device_id"] != nil {
		return fmt.Errorf("whoami already has device_id upstream; drop this overlay")
	}
	props["device_id"] = map[string]any{"type": "string",
		"description": "Device ID associated with the access token (added in spec v1.1)."}
	props["is_guest"] = map[string]any{"type": "boolean",
		"description": "Whether the user is a guest (added in spec v1.2)."}
	return nil
}

func relaxAuthData(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if m["title"] != "Authentication Data" {
			return
		}
		if ap, ok := m["additionalProperties"].(map[string]any); ok && ap["type"] == "object" {
			m["additionalProperties"] = true
			n++
		}
	})
	return n
}

func authDataTypeOptional(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		if m["title"] != "Authentication Data" {
			return
		}
		req, _ := m["required"].([]any)
		kept := req[:0:0]
		for _, r := range req {
			if r != "type" {
				kept = append(kept, r)
			}
		}
		if len(kept) == len(req) {
			return
		}
		if len(kept) == 0 {
			delete(m, "required")
		} else {
			m["required"] = kept
		}
		n++
	})
	return n
}

func addServerKeysWithoutKeyID(_ *loader, doc map[string]any) error {
	paths, _ := doc["paths"].(map[string]any)
	item, ok := paths["/_matrix/key/v2/server/{keyId}"].(map[string]any)
	if !ok {
		return fmt.Errorf("path /_matrix/key/v2/server/{keyId} not found")
	}
	get, ok := item["get"].(map[string]any)
	if !ok {
		return fmt.Errorf("GET /_matrix/key/v2/server/{keyId} not found")
	}
	params, _ := get["parameters"].([]any)
	var kept []any
	found := false
	for _, p := range params {
		if pm, ok := p.(map[string]any); ok && pm["name"] == "keyId" && pm["in"] == "path" {
			found = true
			continue
		}
		kept = append(kept, p)
	}
	if !found {
		return fmt.Errorf("keyId path parameter not found")
	}
	cp := deepCopy(get).(map[string]any)
	if kept == nil {
		delete(cp, "parameters")
	} else {
		cp["parameters"] = kept
	}
	cp["operationId"] = "getServerKeys"
	cp["summary"] = "Get the homeserver's public key(s) (without the deprecated keyId)"
	paths["/_matrix/key/v2/server"] = map[string]any{"get": cp}
	return nil
}

func applyOverlays(l *loader, a api, doc map[string]any) error {
	for _, o := range overlays {
		if !contains(o.APIs, a.Name) {
			continue
		}
		if err := o.Apply(l, doc); err != nil {
			return fmt.Errorf("overlay %s: %w", o.Name, err)
		}
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
