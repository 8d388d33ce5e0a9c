package main

import (
	"fmt"
	"strconv"
)

// An overlay is a named, documented fix-up applied to a bundled OpenAPI 3.1
// document before it is validated and handed to oapi-codegen. The vendored
// files under spec/ are never edited: re-vendoring a newer upstream is a copy
// plus a review of this list. Every overlay fails loudly when it no longer
// finds what it fixes, so a stale entry is noticed instead of silently kept.
type overlay struct {
	Name string
	Why  string
	// APIs the overlay applies to (by api.Name).
	APIs  []string
	Apply func(l *loader, doc map[string]any) error
}

// An absentRef stands in for a file that the vendored files reference but
// that is not part of the upstream copy (the loader substitutes it).
type absentRef struct {
	Target      string // path relative to spec/data/api, as the reference resolves
	Why         string
	Replacement any
}

var anyObject = map[string]any{"type": "object"}

// str and integer are schemas with the identity API's examples.
func str(example string) map[string]any { return map[string]any{"type": "string", "example": example} }
func integer(example int) map[string]any {
	return map[string]any{"type": "integer", "example": example}
}

var absentRefs = []absentRef{
	{
		Target: "identity/definitions/request_email_validation.yaml",
		Why: "the client-server requestToken bodies extend the identity service's schema, which the v1.19 copy does " +
			"not hold; the fields are the identity API's (client_secret, email, send_attempt, next_link).",
		Replacement: map[string]any{"type": "object", "required": []any{"client_secret", "email", "send_attempt"},
			"properties": map[string]any{
				"client_secret": str("monkeys_are_GREAT"), "email": str("alice@example.org"),
				"send_attempt": integer(1), "next_link": str("https://example.org/congratulations.html")}},
	},
	{
		Target: "identity/definitions/request_msisdn_validation.yaml",
		Why: "as request_email_validation: the identity service's schema (client_secret, country, phone_number, " +
			"send_attempt, next_link), not in the v1.19 copy.",
		Replacement: map[string]any{"type": "object", "required": []any{"client_secret", "country", "phone_number", "send_attempt"},
			"properties": map[string]any{
				"client_secret": str("monkeys_are_GREAT"), "country": str("GB"),
				"phone_number": str("07700900001"), "send_attempt": integer(1),
				"next_link": str("https://example.org/congratulations.html")}},
	},
	{
		Target:      "../event-schemas/schema/core-event-schema/event.yaml",
		Why:         "room event schemas (sync's timeline and state) are not in the copy, and rooms are not Myelin's: any object.",
		Replacement: anyObject,
	},
	{
		Target:      "../event-schemas/schema/core-event-schema/stripped_state.yaml",
		Why:         "stripped room state (sync's invite and knock sections) is not in the copy; rooms are not Myelin's: any object.",
		Replacement: anyObject,
	},
	{Target: "../event-schemas/examples/m.presence.yaml", Why: "a presence example of sync's; not in the copy.", Replacement: anyObject},
	{Target: "../event-schemas/examples/m.typing.yaml", Why: "a room typing example of sync's; not in the copy.", Replacement: anyObject},
	{Target: "../event-schemas/examples/m.receipt.yaml", Why: "a room receipt example of sync's; not in the copy.", Replacement: anyObject},
	{Target: "../event-schemas/examples/m.tag.yaml", Why: "a room tag example of sync's; not in the copy.", Replacement: anyObject},
}

var overlays = []overlay{
	{
		Name: "pattern-keyed-maps",
		Why: "maps keyed by user ID (`^@`), room ID (`^!`) or event ID (`^$`) are written with `patternProperties`, " +
			"which oapi-codegen turns into map[string]any and so loses the value type. The one pattern schema becomes " +
			"`additionalProperties`: every key of these maps is such an ID, so the typing is kept and nothing valid is refused.",
		APIs: []string{"clientapi", "fedapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(patternToAdditional(doc), "`patternProperties` map")
		},
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
		Name: "keys-query-null-device-list",
		Why: "Dendrite (and other servers in the wild) ask for all of a user's devices as `null` where the spec says `[]` " +
			"(`{\"device_keys\": {\"@alice:ours\": null}}`); refusing it makes them fall back to stale keys. The device list " +
			"of POST /keys/query and /user/keys/query may be null, which the handlers read as [].",
		APIs: []string{"clientapi", "fedapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			return expect(nullableQueryLists(doc), "a keys query device list")
		},
	},
	{
		Name: "delete-device-body-optional",
		Why: "device_management.yaml requires a body on DELETE /devices/{deviceId}, but its only member (auth) is optional " +
			"and clients first send the request without one to learn the user-interactive auth flows; Synapse and Dendrite " +
			"accept an empty body there. The body stays documented and is no longer required.",
		APIs: []string{"clientapi"},
		Apply: func(_ *loader, doc map[string]any) error {
			body, _ := dig(doc, "paths", "/_matrix/client/v3/devices/{deviceId}", "delete", "requestBody").(map[string]any)
			if body == nil || body["required"] != true {
				return expect(0, "a required body on DELETE /devices/{deviceId}")
			}
			delete(body, "required")
			return nil
		},
	},
	{
		Name: "edu-schemas",
		Why: "The EDU schemas (m.device_list_update, m.signing_key_update, m.direct_to_device) are referenced by no path " +
			"(EDUs travel inside /send as opaque objects). They are added to components.schemas so typed models are generated.",
		APIs: []string{"fedapi"},
		Apply: func(l *loader, doc map[string]any) error {
			comps, _ := doc["components"].(map[string]any)
			schemas := map[string]any{}
			for name, file := range map[string]string{
				"DeviceListUpdateEdu": "m.device_list_update.yaml",
				"SigningKeyUpdateEdu": "m.signing_key_update.yaml",
				"DirectToDeviceEdu":   "m.direct_to_device.yaml",
			} {
				v, err := l.load("server-server/definitions/event-schemas/" + file)
				if err != nil {
					return err
				}
				patternToAdditional(v)
				schemas[name] = v
			}
			comps["schemas"] = schemas
			return nil
		},
	},
}

// dig follows keys (or list indexes) through nested values; nil when any
// step is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		switch t := v.(type) {
		case map[string]any:
			v = t[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(t) {
				return nil
			}
			v = t[i]
		default:
			return nil
		}
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

func patternToAdditional(doc any) int {
	n := 0
	walk(doc, func(m map[string]any) {
		pp, ok := m["patternProperties"].(map[string]any)
		if !ok || len(pp) != 1 || m["additionalProperties"] != nil {
			return
		}
		for _, schema := range pp {
			m["additionalProperties"] = schema
		}
		delete(m, "patternProperties")
		n++
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
				if t, ok := p["type"].(string); ok {
					p["type"] = []any{t, "null"}
				}
				req = append(req, name)
			}
		}
		m["required"] = req
		n++
	})
	return n
}

// nullableQueryLists lets the per-user device lists of the two key query
// bodies be null.
func nullableQueryLists(doc any) int {
	n := 0
	for _, p := range []string{"/_matrix/client/v3/keys/query", "/_matrix/federation/v1/user/keys/query"} {
		lists, _ := dig(doc, "paths", p, "post", "requestBody", "content", "application/json", "schema",
			"properties", "device_keys", "additionalProperties").(map[string]any)
		if lists == nil || lists["type"] != "array" {
			continue
		}
		lists["type"] = []any{"array", "null"}
		n++
	}
	return n
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
