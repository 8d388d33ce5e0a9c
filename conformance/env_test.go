package conformance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/signing"
	"github.com/myelin-hs/myelin/impl/testenv"
)

// env is one case's world: a fresh server in the state the example needs,
// the accounts and device keys made for it, and a federation identity
// that signs requests as a remote server.
type env struct {
	t      *testing.T
	srv    *testenv.Server
	st     state
	remote *remoteServer
	// token sends the replayed request (the state's first device).
	token string
	// devKeys are the ed25519 keys of devices, made on first use.
	devKeys map[string]ed25519.PrivateKey
	// uploaded are the device keys uploaded, by device ID.
	uploaded map[string]map[string]any
	// cs are the account's cross-signing keys (state CrossSigning).
	cs testenv.CrossSigning
}

// blocked is a setup step that hit an operation the server does not
// provide (501 M_UNRECOGNIZED).
type blocked struct {
	op, msg string
}

func (b *blocked) Error() string { return "setup needs " + b.op + ", which answers: " + b.msg }

func newEnv(t *testing.T, b testenv.Backend, st state) (*env, error) {
	e := &env{t: t, st: st, devKeys: map[string]ed25519.PrivateKey{}, uploaded: map[string]map[string]any{}}
	e.remote = newRemoteServer(t, st.origin())
	e.srv = testenv.Start(t, b, func(c *config.Config) {
		if st.ServerName != "" {
			c.ServerName = st.ServerName
		}
		c.FederationResolve = map[string]string{st.origin(): e.remote.url}
		if st.Config != nil {
			st.Config(c)
		}
	})
	if st.Account == "" {
		return e, nil
	}
	devs := st.Devices
	if len(devs) == 0 {
		devs = []device{{}}
	}
	tok, err := e.register(st.Account, st.password(), devs[0])
	if err != nil {
		return nil, err
	}
	e.token = tok
	for i, d := range devs {
		if i > 0 {
			if tok, err = e.login(st.Account, st.password(), d); err != nil {
				return nil, err
			}
		}
		if d.Keys {
			if err := e.uploadKeys(tok, d.ID); err != nil {
				return nil, err
			}
		}
	}
	if st.CrossSigning {
		e.cs = testenv.NewCrossSigning(t, e.userID())
		if _, err := e.call("UploadCrossSigningKeys", "POST", "/_matrix/client/v3/keys/device_signing/upload", e.token, e.cs.Upload(), http.StatusOK); err != nil {
			return nil, err
		}
	}
	if st.Setup != nil {
		if err := st.Setup(e); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *env) userID() string { return "@" + e.st.Account + ":" + e.srv.Config.ServerName }

// call sends a setup request; a 501 M_UNRECOGNIZED answer is reported as
// blocked so the case can say which missing operation it waits for.
func (e *env) call(op, method, path, token string, body any, want int) (testenv.Response, error) {
	r := e.srv.Do(e.t, method, path, token, body)
	if r.Status == http.StatusNotImplemented && r.Str("errcode") == "M_UNRECOGNIZED" {
		return r, &blocked{op: op, msg: r.Str("error")}
	}
	if r.Status != want {
		return r, fmt.Errorf("setup %s: want %d, got %d: %s", op, want, r.Status, r.Raw)
	}
	return r, nil
}

// register creates the account over the public API (open registration,
// m.login.dummy), its first device being d.
func (e *env) register(localpart, password string, d device) (string, error) {
	body := map[string]any{"username": localpart, "password": password}
	if d.ID != "" {
		body["device_id"] = d.ID
	}
	if d.Name != "" {
		body["initial_device_display_name"] = d.Name
	}
	r, err := e.uia("Register", "POST", "/_matrix/client/v3/register", "", body)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusOK || r.Str("access_token") == "" {
		return "", fmt.Errorf("setup Register: want 200 with an access token, got %d: %s", r.Status, r.Raw)
	}
	return r.Str("access_token"), nil
}

// login logs the account in on device d (created with d's name when new).
func (e *env) login(localpart, password string, d device) (string, error) {
	body := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": localpart},
		"password":   password,
	}
	if d.ID != "" {
		body["device_id"] = d.ID
	}
	if d.Name != "" {
		body["initial_device_display_name"] = d.Name
	}
	r, err := e.call("Login", "POST", "/_matrix/client/v3/login", "", body, http.StatusOK)
	if err != nil {
		return "", err
	}
	return r.Str("access_token"), nil
}

// uia sends body and completes user-interactive auth as a client would:
// on a 401 challenge it picks the first flow whose stages it can do
// (m.login.dummy, m.login.password with the state's account) and re-sends
// the body with each stage in turn. Every response along the way goes
// through the test server's response validation.
func (e *env) uia(op, method, path, token string, body map[string]any) (testenv.Response, error) {
	body = clone(body)
	delete(body, "auth") // a client's first request carries no auth
	r := e.send(method, path, token, false, body)
	for range 5 {
		if r.Status == http.StatusNotImplemented && r.Str("errcode") == "M_UNRECOGNIZED" {
			return r, &blocked{op: op, msg: r.Str("error")}
		}
		if r.Status != http.StatusUnauthorized || r.Body["flows"] == nil {
			return r, nil
		}
		stage, err := e.nextStage(r.Body)
		if err != nil {
			return r, err
		}
		auth := map[string]any{"type": stage}
		if s, ok := r.Body["session"].(string); ok {
			auth["session"] = s
		}
		if stage == "m.login.password" {
			auth["identifier"] = map[string]any{"type": "m.id.user", "user": e.st.Account}
			auth["password"] = e.st.password()
		}
		body["auth"] = auth
		r = e.send(method, path, token, false, body)
	}
	return r, fmt.Errorf("%s: user-interactive auth did not finish after 5 stages: %s", op, r.Raw)
}

var stagesWeDo = map[string]bool{"m.login.dummy": true, "m.login.password": true}

func (e *env) nextStage(challenge map[string]any) (string, error) {
	done := map[string]bool{}
	if c, ok := challenge["completed"].([]any); ok {
		for _, s := range c {
			if s, ok := s.(string); ok {
				done[s] = true
			}
		}
	}
	flows, _ := challenge["flows"].([]any)
flows:
	for _, f := range flows {
		stages, _ := f.(map[string]any)["stages"].([]any)
		for _, s := range stages {
			if s, ok := s.(string); !ok || !stagesWeDo[s] {
				continue flows
			}
		}
		for _, s := range stages {
			if !done[s.(string)] {
				return s.(string), nil
			}
		}
	}
	return "", fmt.Errorf("no flow of the challenge can be completed with %v: %v", stagesWeDo, flows)
}

// deviceKey returns the ed25519 key of device id, made on first use.
func (e *env) deviceKey(id string) ed25519.PrivateKey {
	if k, ok := e.devKeys[id]; ok {
		return k
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	e.devKeys[id] = k
	return k
}

// signAs re-signs obj (a JSON object) as userID's device: any signature
// already there (the spec's examples carry illustrative ones no server can
// verify) is replaced.
func (e *env) signAs(userID, deviceID string, obj map[string]any) (map[string]any, error) {
	delete(obj, "signatures")
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	signed, err := signing.SignJSON(userID, signing.KeyID("ed25519:"+deviceID), e.deviceKey(deviceID), js)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(signed, &out)
}

// deviceKeysFor returns signed device keys of the device, as a client
// uploads them.
func (e *env) deviceKeysFor(userID, deviceID string) (map[string]any, error) {
	curve := make([]byte, 32)
	_, _ = rand.Read(curve)
	pub := e.deviceKey(deviceID).Public().(ed25519.PublicKey)
	return e.signAs(userID, deviceID, map[string]any{
		"user_id":    userID,
		"device_id":  deviceID,
		"algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"curve25519:" + deviceID: signing.EncodeBase64(curve),
			"ed25519:" + deviceID:    signing.EncodeBase64(pub),
		},
	})
}

// uploadKeys uploads signed device keys and one signed one-time key for
// the device, over the public API.
func (e *env) uploadKeys(token, deviceID string) error {
	dk, err := e.deviceKeysFor(e.userID(), deviceID)
	if err != nil {
		return err
	}
	e.uploaded[deviceID] = dk
	otk := make([]byte, 32)
	_, _ = rand.Read(otk)
	signedOTK, err := e.signAs(e.userID(), deviceID, map[string]any{"key": signing.EncodeBase64(otk)})
	if err != nil {
		return err
	}
	_, err = e.call("UploadKeys", "POST", "/_matrix/client/v3/keys/upload", token, map[string]any{
		"device_keys":   dk,
		"one_time_keys": map[string]any{"signed_curve25519:AAAAHg": signedOTK},
	}, http.StatusOK)
	return err
}

// send sends the replayed request: bearer token for client operations, an
// X-Matrix signature by the remote identity for federation ones.
func (e *env) send(method, requestURI, token string, signed bool, body map[string]any) testenv.Response {
	var content []byte
	if body != nil {
		var err error
		if content, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, e.srv.URL+requestURI, bytes.NewReader(content))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if signed {
		h, err := e.remote.sign(e.srv.Config.ServerName, method, requestURI, content)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Header.Set("Authorization", h)
	}
	// The API's only redirects (the SSO redirect endpoints) are answers
	// to check, not to follow.
	return testenv.DoRequestNoFollow(e.t, req)
}

// remoteServer is a federation identity for signed requests: it publishes
// its ed25519 key at /_matrix/key/v2/server like any homeserver, and the
// server under test reaches it through config.FederationResolve. Anything
// the server sends it (device-list updates) is accepted.
type remoteServer struct {
	name  string
	keyID signing.KeyID
	priv  ed25519.PrivateKey
	url   string
}

func newRemoteServer(t *testing.T, name string) *remoteServer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs := &remoteServer{name: name, keyID: "ed25519:conformance", priv: priv}
	hs := httptest.NewServer(http.HandlerFunc(rs.serve))
	t.Cleanup(hs.Close)
	rs.url = hs.URL
	return rs
}

func (rs *remoteServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/_matrix/key/v2/server"):
		doc, _ := json.Marshal(map[string]any{
			"server_name":     rs.name,
			"valid_until_ts":  time.Now().Add(time.Hour).UnixMilli(),
			"verify_keys":     map[string]any{string(rs.keyID): map[string]any{"key": signing.EncodeBase64(rs.priv.Public().(ed25519.PublicKey))}},
			"old_verify_keys": map[string]any{},
		})
		signed, err := signing.SignJSON(rs.name, rs.keyID, rs.priv, doc)
		if err != nil {
			http.Error(w, `{"errcode":"M_UNKNOWN","error":"signing failed"}`, http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(signed)
	case strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/"):
		_, _ = w.Write([]byte(`{"pdus":{}}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`))
	}
}

func (rs *remoteServer) sign(destination, method, requestURI string, content []byte) (string, error) {
	return signing.SignRequest(rs.name, destination, rs.keyID, rs.priv, method, requestURI, content)
}
