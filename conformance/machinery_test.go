package conformance

import (
	"encoding/json"
	"strings"
	"testing"
)

// Tests of the suite's own machinery: a check that cannot fail proves
// nothing, so each is shown failing on a broken response.

func find(t *testing.T, id string) operation {
	t.Helper()
	for _, o := range operations(t) {
		if o.ID() == id {
			return o
		}
	}
	t.Fatalf("no operation %s in the spec", id)
	return operation{}
}

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestExampleCheckCatchesAMissingOrMistypedDeviceKey(t *testing.T) {
	op := find(t, "GetDevices").Op
	example, schema := responseExample(op, "200")
	if example == nil {
		t.Fatal("GetDevices documents no 200 example")
	}
	cases := []struct {
		name, body, want string
	}{
		{"device without device_id", `{"devices":[{"display_name":"android","last_seen_ip":"1.2.3.4","last_seen_ts":1}]}`, "devices[0].device_id: missing"},
		{"last_seen_ts as string", `{"devices":[{"device_id":"A","display_name":"android","last_seen_ip":"1.2.3.4","last_seen_ts":"1"}]}`, "last_seen_ts: example has number, response has string"},
		{"display_name null", `{"devices":[{"device_id":"A","display_name":null,"last_seen_ip":"1.2.3.4","last_seen_ts":1}]}`, "display_name: example has string, response has null"},
		{"empty list", `{"devices":[]}`, "devices[0]: missing"},
		{"no devices key", `{}`, "devices: missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := compareExample(example, decode(t, c.body), schema, nil)
			if !strings.Contains(summarize(errs), c.want) {
				t.Fatalf("want a problem %q, got %q", c.want, errs)
			}
		})
	}
	good := `{"devices":[{"device_id":"OTHER","display_name":null,"last_seen_ip":null,"last_seen_ts":null},
		{"device_id":"QBUAZIFURK","display_name":"android","last_seen_ip":"127.0.0.1","last_seen_ts":17}]}`
	if errs := compareExample(example, decode(t, good), schema, nil); len(errs) > 0 {
		t.Fatalf("a list holding the example's device among others: %q", errs)
	}
}

func TestExampleCheckTreatsMapKeysAsDataAndErrcodeAsContract(t *testing.T) {
	keys := find(t, "GetServerKey").Op
	example, schema := responseExample(keys, "200")
	// Other key IDs than the example's are fine when the entries have its shape.
	good := `{"server_name":"example.org","valid_until_ts":1,"old_verify_keys":{},
		"verify_keys":{"ed25519:xyz":{"key":"abc"}},"signatures":{"example.org":{"ed25519:xyz":"sig"}}}`
	absent := map[string]string{"old_verify_keys.ed25519:0ldk3y": "test"}
	if errs := compareExample(example, decode(t, good), schema, absent); len(errs) > 0 {
		t.Fatalf("conforming key document: %q", errs)
	}
	if errs := compareExample(example, decode(t, good), schema, nil); !strings.Contains(summarize(errs), "old_verify_keys.ed25519:0ldk3y: missing") {
		t.Fatalf("an empty map where the example has entries must be reported unless declared absent: %q", errs)
	}
	bad := strings.Replace(good, `{"key":"abc"}`, `"abc"`, 1)
	if errs := compareExample(example, decode(t, bad), schema, absent); !strings.Contains(summarize(errs), "verify_keys.ed25519:xyz: example has object, response has string") {
		t.Fatalf("a map entry of the wrong shape: %q", errs)
	}

	reg := find(t, "Register").Op
	ex400, s400 := responseExample(reg, "400")
	if errs := compareExample(ex400, decode(t, `{"errcode":"M_INVALID_USERNAME","error":"x"}`), s400, nil); !strings.Contains(summarize(errs), "errcode") {
		t.Fatalf("a different errcode must be reported: %q", errs)
	}
}

func TestExampleRequestsAreBuiltFromTheSpec(t *testing.T) {
	r, err := buildRequest(find(t, "DeleteDevice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.URI != "/_matrix/client/v3/devices/QBUAZIFURK" || !r.UIA {
		t.Fatalf("x-example path parameter or UIA detection: %+v", r)
	}
	r, err = buildRequest(find(t, "Register"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.URI != "/_matrix/client/v3/register?kind=user" || r.Body["username"] != "cheeky_monkey" || r.Body["password"] != "ilovebananas" {
		t.Fatalf("register example from query x-example and property examples: %+v", r)
	}
	r, err = buildRequest(find(t, "GetUserDevices"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.URI != "/_matrix/federation/v1/user/devices/@alice:example.org" {
		t.Fatalf("user ID path parameter: %q", r.URI)
	}
	r, err = buildRequest(find(t, "Login"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Body["type"] != "m.login.password" || r.Body["identifier"] == nil {
		t.Fatalf("login whole-body example: %+v", r.Body)
	}
}

func TestEveryStateNamesAnOperationAndADeclaredStatus(t *testing.T) {
	byID := map[string]operation{}
	for _, o := range operations(t) {
		byID[o.ID()] = o
	}
	for id, sts := range states {
		o, ok := byID[id]
		if !ok {
			t.Errorf("states: %s is not an operation of the spec", id)
			continue
		}
		for _, st := range sts {
			// A deliberate refusal may use an undeclared status: the
			// response validation then requires a Matrix error.
			if o.Op.Responses.Status(st.target(o)) == nil && st.Unsupported == "" {
				t.Errorf("states: %s does not declare status %d", id, st.target(o))
			}
			if st.Status != 0 && st.Why == "" {
				t.Errorf("states: %s %d must say why the state produces it", id, st.Status)
			}
		}
	}
}
