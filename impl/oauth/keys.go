package oauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/myelin-hs/myelin/impl/storage"
)

// keyCache holds the ID-token signing key of this process (loaded from
// the database, where the first process that needs one creates it).
type keyCache struct {
	mu     sync.Mutex
	kid    string
	key    *rsa.PrivateKey
	signer jose.Signer
}

// signingKey returns the signing key, creating it in the database if
// there is none. Concurrent processes insert with ON CONFLICT DO NOTHING
// under one fixed key ID, then all read back the one that won.
func (s *Service) signingKey(ctx context.Context) (*keyCache, error) {
	k := &s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil {
		return k, nil
	}
	var row storage.OAuthKey
	err := s.Store.R.NewSelect().Model(&row).Where("alg = ?", "RS256").Order("created_ts").Limit(1).Scan(ctx)
	if err != nil {
		priv, gerr := rsa.GenerateKey(rand.Reader, 2048)
		if gerr != nil {
			return nil, gerr
		}
		der, gerr := x509.MarshalPKCS8PrivateKey(priv)
		if gerr != nil {
			return nil, gerr
		}
		pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		sum := sha256.Sum256(pub)
		row = storage.OAuthKey{KID: base64.RawURLEncoding.EncodeToString(sum[:12]), Alg: "RS256",
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), CreatedTS: s.now().UnixMilli()}
		if _, err := s.Store.DB.NewInsert().Model(&row).On("CONFLICT (kid) DO NOTHING").Exec(ctx); err != nil {
			return nil, err
		}
		if err := s.Store.DB.NewSelect().Model(&row).Where("alg = ?", "RS256").Order("created_ts").Limit(1).Scan(ctx); err != nil {
			return nil, err
		}
	}
	block, _ := pem.Decode([]byte(row.PrivateKey))
	if block == nil {
		return nil, errors.New("oauth: stored signing key is not PEM")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("oauth: stored signing key: %w", err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("oauth: stored signing key is not RSA")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: priv, KeyID: row.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	k.kid, k.key, k.signer = row.KID, priv, signer
	return k, nil
}

// JWKS is the public half of the signing key, for jwks_uri.
func (s *Service) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	k, err := s.signingKey(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: "RS256", Use: "sig"}}}, nil
}

// idToken signs the OpenID Connect ID token of a grant with the openid
// scope: the user ID as subject, the client as audience.
func (s *Service) idToken(ctx context.Context, g grantee, deviceID string) (string, error) {
	k, err := s.signingKey(ctx)
	if err != nil {
		return "", err
	}
	now := s.now()
	claims := struct {
		jwt.Claims
		AuthTime int64  `json:"auth_time,omitempty"`
		Nonce    string `json:"nonce,omitempty"`
		DeviceID string `json:"device_id,omitempty"`
	}{
		Claims: jwt.Claims{Issuer: s.Issuer(), Subject: g.userID, Audience: jwt.Audience{g.client.ClientID},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))},
		Nonce: g.nonce, DeviceID: deviceID,
	}
	if !g.authTime.IsZero() {
		claims.AuthTime = g.authTime.Unix()
	}
	return jwt.Signed(k.signer).Claims(claims).Serialize()
}
