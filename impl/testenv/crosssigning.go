package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/myelin-hs/myelin/impl/signing"
)

// CrossSigning is a user's set of cross-signing keys made as clients make
// them: each key object, and the private keys.
type CrossSigning struct {
	UserID                 string
	Master, Self, User     json.RawMessage
	MasterPriv, SelfPriv   ed25519.PrivateKey
	UserPriv               ed25519.PrivateKey
	MasterID, SelfID, USID string // unpadded base64 public keys
}

// NewCrossSigning generates master, self-signing and user-signing keys for
// userID, the latter two signed by the master key.
func NewCrossSigning(t testing.TB, userID string) CrossSigning {
	t.Helper()
	cs := CrossSigning{UserID: userID}
	var mpub, spub, upub ed25519.PublicKey
	mpub, cs.MasterPriv = genKey(t)
	spub, cs.SelfPriv = genKey(t)
	upub, cs.UserPriv = genKey(t)
	cs.MasterID, cs.SelfID, cs.USID = signing.EncodeBase64(mpub), signing.EncodeBase64(spub), signing.EncodeBase64(upub)
	cs.Master = CrossSigningKey(t, userID, "master", mpub)
	cs.Self = cs.SignWith(t, cs.MasterPriv, CrossSigningKey(t, userID, "self_signing", spub))
	cs.User = cs.SignWith(t, cs.MasterPriv, CrossSigningKey(t, userID, "user_signing", upub))
	return cs
}

func genKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// CrossSigningKey returns an unsigned cross-signing key object.
func CrossSigningKey(t testing.TB, userID, usage string, pub ed25519.PublicKey) json.RawMessage {
	t.Helper()
	id := signing.EncodeBase64(pub)
	raw, err := json.Marshal(map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + id: id}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// SignWith signs obj as cs.UserID with priv (key ID "ed25519:<its public
// key>"), keeping other signatures.
func (cs CrossSigning) SignWith(t testing.TB, priv ed25519.PrivateKey, obj json.RawMessage) json.RawMessage {
	t.Helper()
	id := signing.EncodeBase64(priv.Public().(ed25519.PublicKey))
	out, err := signing.SignJSON(cs.UserID, signing.KeyID("ed25519:"+id), priv, obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Upload is the body of /keys/device_signing/upload with all three keys.
func (cs CrossSigning) Upload() map[string]any {
	return map[string]any{"master_key": cs.Master, "self_signing_key": cs.Self, "user_signing_key": cs.User}
}
