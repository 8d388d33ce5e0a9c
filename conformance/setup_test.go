package conformance

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// state is what a server must hold before an example can be replayed
// against it. The requests and the expected responses come from the spec
// at test time; this file only says which accounts, devices and keys the
// examples talk about, so a fresh server can be brought into that state
// through the public API.
type state struct {
	// Status is the documented response this state produces; 0 means the
	// operation's success status (its lowest declared 2xx).
	Status int
	// Why says how the state produces a non-success Status.
	Why string
	// ServerName is the server name the example's IDs live on.
	ServerName string
	// Config changes the server's configuration.
	Config func(c *config.Config)
	// Account is registered (over the API) before the request; its first
	// device's access token sends the replayed request.
	Account  string
	Password string
	// Devices of the account: the first is made by registration, the
	// others by logging in with their ID.
	Devices []device
	// BadToken sends the request with an access token nobody holds.
	BadToken bool
	// Origin is the remote server name that signs federation requests.
	Origin string
	// Retries re-sends the example up to this many times while the answer
	// is not Status (to drain a rate limit).
	Retries int
	// Setup runs after the account exists: requests that bring the server
	// into the example's state (a key backup to read, for example).
	Setup func(e *env) error
	// Prepare adjusts the example request to the state (for example,
	// re-signs illustrative key signatures with the device's real key).
	Prepare func(e *env, body map[string]any) error
	// Unsupported says why Myelin deliberately answers this operation with
	// the Matrix error of Status instead of serving it; the case then checks
	// that error (status, schema) and reports the operation as unsupported.
	Unsupported string
	// Absent lists example keys (dotted paths) the server deliberately
	// does not send, with the reason; the README's list of deviations.
	Absent map[string]string
	// Params are values of parameters the spec gives no example for
	// (by name).
	Params map[string]string
	// CrossSigning uploads cross-signing keys for the account (after its
	// devices), as a client sets them up.
	CrossSigning bool
}

type device struct {
	ID, Name string
	// Keys uploads signed device keys and a signed one-time key.
	Keys bool
}

func (s state) origin() string {
	if s.Origin != "" {
		return s.Origin
	}
	return "conformance.test"
}

func (s state) password() string {
	if s.Password != "" {
		return s.Password
	}
	return "correct horse battery staple"
}

// The states of the examples, keyed by operation. An operation without an
// entry is replayed once against a fresh server: with an account when it
// needs an access token, signed by a remote server when it needs that.
var states = map[string][]state{
	// No examples upstream: a web client's redirectUrl, and an IdP ID.
	"RedirectToSSO": {{Status: http.StatusFound, Why: "the browser is sent to the sign-in page",
		Params: map[string]string{"redirectUrl": "https://client.example.org/login?from=sso", "action": "login"}}},
	"RedirectToIdP": {{Status: http.StatusNotFound, Why: "GET /login lists no identity providers, so every idpId is unknown",
		Params: map[string]string{"redirectUrl": "https://client.example.org/login", "idpId": "com.example.idp.github"}}},
	"GetVersions": {{Absent: map[string]string{
		"unstable_features.org.example.my_feature": "an illustrative vendor feature; Myelin advertises none",
		"versions[0]": "/versions lists only what the coverage table allows (see its table)",
		"versions[1]": "/versions lists only what the coverage table allows (see its table)",
	}}},
	"GetWellknown": {{Absent: map[string]string{
		"m.identity_server": "Myelin has no identity server to advertise",
	}}},
	"GetCapabilities": {{Account: "alice", Absent: map[string]string{
		"capabilities.m.room_versions": "Myelin serves accounts and devices, no rooms",
	}}},
	"GetTokenOwner": {
		{ServerName: "example.org", Account: "joe"},
		{Status: http.StatusUnauthorized, Why: "the access token is unknown", BadToken: true},
	},
	"Register": {
		// The example registers cheeky_monkey on matrix.org.
		{ServerName: "matrix.org"},
		{Status: http.StatusBadRequest, Why: "the username is taken", ServerName: "matrix.org", Account: "cheeky_monkey"},
		{Status: http.StatusForbidden, Why: "registration is disabled", Config: func(c *config.Config) {
			c.Registration = config.RegistrationDisabled
		}},
	},
	"CheckUsernameAvailability": {
		{},
		{Status: http.StatusBadRequest, Why: "the username is taken", Account: "my_cool_localpart"},
	},
	"Login": {
		{ServerName: "matrix.org", Account: "cheeky_monkey", Password: "ilovebananas", Prepare: askForRefreshToken, Absent: map[string]string{
			"well_known": "optional; Myelin's login answer carries none, clients read /.well-known/matrix/client",
		}},
		{Status: http.StatusForbidden, Why: "no such account", ServerName: "matrix.org"},
		{Status: http.StatusTooManyRequests, Why: "the example is repeated beyond the default rate limits",
			ServerName: "matrix.org", Account: "cheeky_monkey", Password: "ilovebananas", Retries: 40,
			Config: func(c *config.Config) { c.RateLimit = config.Defaults().RateLimit }},
	},
	"RequestTokenTo3PIDEmail":  noThreePIDs,
	"RequestTokenTo3PIDMSISDN": noThreePIDs,
	"Post3PIDs":                noValidated3PID,
	"Add3PID":                  noValidated3PID,
	"Bind3PID": {{Account: "alice", Status: http.StatusBadRequest, Why: "no identity server",
		Unsupported: "Myelin talks to no identity server"}},
	"GetAuthMetadata": {
		{},
		{Status: http.StatusNotFound, Why: "--auth legacy: the OAuth 2.0 API is not offered",
			Config: func(c *config.Config) { c.Auth = config.AuthLegacy }},
	},
	"GetAccountDataPerRoom": {{ServerName: "example.com", Account: "alice", Status: http.StatusNotFound, Why: "no rooms, so no room account data",
		Unsupported: "Myelin holds no rooms"}},
	"SetAccountDataPerRoom": {{ServerName: "example.com", Account: "alice", Status: http.StatusForbidden, Why: "no rooms, so no room account data",
		Unsupported: "Myelin holds no rooms"}},
	"RequestTokenToRegisterEmail":       noThreePIDs,
	"RequestTokenToRegisterMSISDN":      noThreePIDs,
	"RequestTokenToResetPasswordEmail":  noThreePIDs,
	"RequestTokenToResetPasswordMSISDN": noThreePIDs,
	"ChangePassword":                    {{Account: "alice"}},
	"DeactivateAccount":                 {{Account: "alice"}},
	"GetDevices":                        {{Account: "alice", Devices: []device{{ID: "QBUAZIFURK", Name: "android"}}}},
	"GetDevice": {
		{Account: "alice", Devices: []device{{ID: "QBUAZIFURK", Name: "android"}}},
		{Status: http.StatusNotFound, Why: "the account has no such device", Account: "alice"},
	},
	"UpdateDevice": {
		{Account: "alice", Devices: []device{{ID: "QBUAZIFURK", Name: "android"}}},
		{Status: http.StatusNotFound, Why: "the account has no such device", Account: "alice"},
	},
	"DeleteDevice":  {{Account: "alice", Devices: []device{{}, {ID: "QBUAZIFURK", Name: "android"}}}},
	"DeleteDevices": {{Account: "alice", Devices: []device{{}, {ID: "QBUAZIFURK"}, {ID: "AUIECTSRND"}}}},
	// The key examples are about @alice:example.com's device JLAFKJWSCS.
	"UploadKeys": {{ServerName: "example.com", Account: "alice", Devices: []device{{ID: "JLAFKJWSCS"}},
		Prepare: resignUploadedKeys}},
	"QueryKeys": {{ServerName: "example.com", Account: "alice", Devices: []device{{ID: "JLAFKJWSCS", Name: "Alice's mobile phone", Keys: true}},
		CrossSigning: true}},
	"GetLoginFlows": {{Config: func(c *config.Config) { c.GetLoginToken = true }}},
	"ClaimKeys":     {{ServerName: "example.com", Account: "alice", Devices: []device{{ID: "JLAFKJWSCS", Keys: true}}}},
	// The example's tokens are another server's: /sync starts over as an
	// initial sync, /keys/changes counts from the beginning.
	"GetKeysChanges": {{Account: "alice", Absent: map[string]string{
		"left": "Myelin holds no rooms, so no user stops sharing one with the caller: left is always empty",
	}}},
	"Sync": {{Account: "alice", Absent: map[string]string{
		"rooms":        "Myelin holds no rooms: rooms is always empty",
		"presence":     "Myelin has no presence: presence.events is always empty",
		"account_data": "this state sets no account data",
	}}},
	"QueryUserEncryptionKeys": {{ServerName: "example.com", Account: "alice",
		Devices: []device{{ID: "JLAFKJWSCS", Name: "Alice's mobile phone", Keys: true}}, CrossSigning: true}},
	"ClaimUserEncryptionKeys": {{ServerName: "example.com", Account: "alice",
		Devices: []device{{ID: "JLAFKJWSCS", Keys: true}}}},
	"GetUserDevices": {{ServerName: "example.org", Account: "alice",
		Devices: []device{{ID: "JLAFKJWSCS", Name: "Alice's Mobile Phone", Keys: true}}, CrossSigning: true, Absent: map[string]string{
			"master_key.signatures": "signatures are optional on master keys; the one set up here has none",
		}}},
	// The cross-signing examples: @alice:example.com uploads her keys;
	// she signs her device HIJKLMN, her master key with that device, and
	// @bob:example.com's master key. Their illustrative keys and
	// signatures are replaced with real ones.
	"UploadCrossSigningKeys": {{ServerName: "example.com", Account: "alice", Prepare: realCrossSigningKeys}},
	"UploadCrossSigningSignatures": {{ServerName: "example.com", Account: "alice", Devices: []device{{ID: "HIJKLMN", Keys: true}},
		CrossSigning: true, Prepare: realSignatures, Absent: map[string]string{
			"failures.@alice:example.com": "the example shows a failure; re-signed with real keys, every signature is valid",
		}}},
	"GetServerKey": {{ServerName: "example.org", Absent: map[string]string{
		"old_verify_keys.ed25519:0ldk3y": "no key has been rotated out on a fresh server",
	}}},
	// Account data and key backups: the examples are @alice:example.com's.
	"GetAccountData": {
		{ServerName: "example.com", Account: "alice", Setup: putAccountData},
		{Status: http.StatusNotFound, Why: "the type was never set", ServerName: "example.com", Account: "alice"},
		{Status: http.StatusForbidden, Why: "the token is another user's", ServerName: "example.com", Account: "bob"},
	},
	"SetAccountData": {
		{ServerName: "example.com", Account: "alice"},
		{Status: http.StatusForbidden, Why: "the token is another user's", ServerName: "example.com", Account: "bob"},
	},
	"PostRoomKeysVersion": {{ServerName: "example.org", Account: "alice"}},
	"GetRoomKeysVersionCurrent": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"GetRoomKeysVersion": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusNotFound, Why: "the version does not exist", ServerName: "example.org", Account: "alice"},
	},
	"PutRoomKeysVersion": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusNotFound, Why: "the version does not exist", ServerName: "example.org", Account: "alice"},
	},
	"DeleteRoomKeysVersion": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusNotFound, Why: "the version never existed", ServerName: "example.org", Account: "alice"},
	},
	"PutRoomKeys": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusForbidden, Why: "version 1 is not the current one", ServerName: "example.org", Account: "alice", Setup: backupVersions(2)},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"PutRoomKeysByRoomId": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusForbidden, Why: "version 1 is not the current one", ServerName: "example.org", Account: "alice", Setup: backupVersions(2)},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"PutRoomKeyBySessionId": {
		{ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
		{Status: http.StatusForbidden, Why: "version 1 is not the current one", ServerName: "example.org", Account: "alice", Setup: backupVersions(2)},
	},
	"GetRoomKeys": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"GetRoomKeysByRoomId": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"GetRoomKeyBySessionId": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the backup holds no such key", ServerName: "example.org", Account: "alice", Setup: backupVersions(1)},
	},
	"DeleteRoomKeys": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"DeleteRoomKeysByRoomId": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	"DeleteRoomKeyBySessionId": {
		{ServerName: "example.org", Account: "alice", Setup: backedUpKey},
		{Status: http.StatusNotFound, Why: "the user has no backup", ServerName: "example.org", Account: "alice"},
	},
	// The transaction example is sent by matrix.org.
	"SendTransaction": {{Origin: "matrix.org", Absent: map[string]string{
		"pdus.$failed_event:example.org":     "Myelin holds no rooms: PDUs get an empty result",
		"pdus.$successful_event:example.org": "Myelin holds no rooms: PDUs get an empty result",
	}}},
}

// Myelin verifies no email addresses or phone numbers (3PIDs are bound by
// the admin CLI), so the requestToken endpoints refuse with a Matrix error.
var noThreePIDs = []state{{Status: http.StatusBadRequest, Why: "3PID verification is not configured",
	Unsupported: "no email or SMS verification; 3PIDs are bound with `myelin user threepid add`"}}

// Adding a 3PID needs a session validated by email or SMS, which Myelin
// never issues.
var noValidated3PID = []state{{Account: "alice", Status: http.StatusBadRequest, Why: "no 3PID session is ever validated",
	Unsupported: "no email or SMS verification; 3PIDs are bound with `myelin user threepid add`"}}

// putAccountData stores the account data the GET example reads.
func putAccountData(e *env) error {
	_, err := e.call("setAccountData", http.MethodPut, "/_matrix/client/v3/user/"+e.userID()+"/account_data/org.example.custom.config",
		e.token, map[string]any{"custom_account_data_key": "custom_config_value"}, http.StatusOK)
	return err
}

// backupVersions creates n key backup versions ("1" … "n") with the
// examples' auth_data.
func backupVersions(n int) func(e *env) error {
	return func(e *env) error {
		for range n {
			if _, err := e.call("postRoomKeysVersion", http.MethodPost, "/_matrix/client/v3/room_keys/version", e.token,
				map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "abcdefg",
					"signatures": map[string]any{"@alice:example.org": map[string]any{"ed25519:deviceid": "signature"}}}},
				http.StatusOK); err != nil {
				return err
			}
		}
		return nil
	}
}

// backedUpKey creates backup version 1 holding the key the examples read.
func backedUpKey(e *env) error {
	if err := backupVersions(1)(e); err != nil {
		return err
	}
	_, err := e.call("putRoomKeyBySessionId", http.MethodPut, "/_matrix/client/v3/room_keys/keys/%21roomid:example.org/sessionid?version=1", e.token,
		map[string]any{"first_message_index": 1, "forwarded_count": 0, "is_verified": true,
			"session_data": map[string]any{"ephemeral": "base64+ephemeral+key", "ciphertext": "base64+ciphertext+of+JSON+data", "mac": "base64+mac+of+ciphertext"}},
		http.StatusOK)
	return err
}

// resignUploadedKeys replaces the example's device key and signatures
// (illustrative, unverifiable) with the device's real key and signatures.
func resignUploadedKeys(e *env, body map[string]any) error {
	dk, ok := body["device_keys"].(map[string]any)
	if !ok {
		return fmt.Errorf("the upload example has no device_keys")
	}
	user, _ := dk["user_id"].(string)
	dev, _ := dk["device_id"].(string)
	fresh, err := e.deviceKeysFor(user, dev)
	if err != nil {
		return err
	}
	keys, _ := dk["keys"].(map[string]any)
	keys["ed25519:"+dev] = fresh["keys"].(map[string]any)["ed25519:"+dev]
	if body["device_keys"], err = e.signAs(user, dev, dk); err != nil {
		return err
	}
	otks, _ := body["one_time_keys"].(map[string]any)
	for id, k := range otks {
		if obj, ok := k.(map[string]any); ok {
			if otks[id], err = e.signAs(user, dev, obj); err != nil {
				return err
			}
		}
	}
	return nil
}

// realCrossSigningKeys replaces the example's illustrative cross-signing
// keys with real ones of the account.
func realCrossSigningKeys(e *env, body map[string]any) error {
	cs := testenv.NewCrossSigning(e.t, e.userID())
	for name, raw := range map[string]json.RawMessage{"master_key": cs.Master, "self_signing_key": cs.Self, "user_signing_key": cs.User} {
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			return err
		}
		body[name] = obj
	}
	return nil
}

// realSignatures rebuilds the signatures example with real keys: the
// account's device HIJKLMN signed by its self-signing key, its master key
// signed by HIJKLMN, and bob's master key (bob is registered here, with
// cross-signing keys) signed by the account's user-signing key.
func realSignatures(e *env, body map[string]any) error {
	alice := e.userID()
	bob := "@bob:" + e.srv.Config.ServerName
	bobTok, err := e.register("bob", e.st.password(), device{})
	if err != nil {
		return err
	}
	bcs := testenv.NewCrossSigning(e.t, bob)
	if _, err := e.call("UploadCrossSigningKeys", "POST", "/_matrix/client/v3/keys/device_signing/upload", bobTok, bcs.Upload(), http.StatusOK); err != nil {
		return err
	}
	dk, err := json.Marshal(e.uploaded["HIJKLMN"])
	if err != nil {
		return err
	}
	master, err := signing.SignJSON(alice, "ed25519:HIJKLMN", e.deviceKey("HIJKLMN"), e.cs.Master)
	if err != nil {
		return err
	}
	objects := map[string]map[string]json.RawMessage{
		alice: {"HIJKLMN": e.cs.SignWith(e.t, e.cs.SelfPriv, dk), e.cs.MasterID: master},
		bob:   {bcs.MasterID: e.cs.SignWith(e.t, e.cs.UserPriv, bcs.Master)},
	}
	for k := range body {
		delete(body, k)
	}
	for user, keys := range objects {
		m := map[string]any{}
		for id, raw := range keys {
			var obj map[string]any
			if err := json.Unmarshal(raw, &obj); err != nil {
				return err
			}
			m[id] = obj
		}
		body[user] = m
	}
	return nil
}
