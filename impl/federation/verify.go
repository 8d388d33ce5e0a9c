package federation

import (
	"context"
	"errors"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/signing"
)

// Verifier authenticates inbound federation requests (X-Matrix).
type Verifier struct {
	ServerName string
	Keys       *Keyring
	// Seen, if set, is told the origin of every authenticated request (the
	// sender retries a destination at once when it hears from it).
	Seen func(ctx context.Context, origin string)
}

type originKey struct{}

// WithOrigin returns ctx carrying the authenticated origin server.
func WithOrigin(ctx context.Context, origin string) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// Origin returns the authenticated origin of a federation request.
func Origin(ctx context.Context) (string, error) {
	o, _ := ctx.Value(originKey{}).(string)
	if o == "" {
		return "", matrixerr.Unauthorized("Missing X-Matrix authorization")
	}
	return o, nil
}

// Verify checks the Authorization header of a request for us: it must be a
// well-formed X-Matrix header addressed to us (or to no one, as servers
// before Matrix v1.3 send), from another server, signed by one of that
// server's current keys over method, requestURI and body. It returns the
// origin, or 401 M_UNAUTHORIZED.
func (v *Verifier) Verify(ctx context.Context, authorization, method, requestURI string, body []byte) (string, error) {
	if authorization == "" {
		return "", matrixerr.Unauthorized("Missing X-Matrix authorization")
	}
	a, err := signing.ParseXMatrix(authorization)
	if err != nil {
		return "", matrixerr.Unauthorized("Malformed X-Matrix authorization")
	}
	if a.Destination != "" && a.Destination != v.ServerName {
		return "", matrixerr.Unauthorized("Request is addressed to another server")
	}
	if a.Origin == v.ServerName {
		return "", matrixerr.Unauthorized("Request claims to come from this server")
	}
	if _, _, err := splitServerName(a.Origin); err != nil {
		return "", matrixerr.Unauthorized("Invalid origin")
	}
	pub, err := v.Keys.VerifyKey(ctx, a.Origin, a.KeyID)
	if err != nil {
		if errors.Is(err, ErrNoKey) {
			return "", matrixerr.Unauthorized("Unknown or expired key " + string(a.KeyID) + " of " + a.Origin)
		}
		return "", err
	}
	if err := signing.VerifyRequest(a, pub, v.ServerName, method, requestURI, body); err != nil {
		return "", matrixerr.Unauthorized("Invalid X-Matrix signature")
	}
	if v.Seen != nil {
		v.Seen(ctx, a.Origin)
	}
	return a.Origin, nil
}
