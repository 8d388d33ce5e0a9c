// Package credentials checks a password credential the one way Myelin
// knows: the body of POST /login with type m.login.password and the
// m.login.password stage of user-interactive auth both go through it, so
// login and UIA cannot drift apart.
//
// It resolves the identifier (m.id.user with a localpart or a full user ID,
// case-insensitive; m.id.thirdparty; the legacy "user" and
// "medium"/"address" fields), verifies argon2id or bcrypt hashes through
// impl/passwords, hashes a dummy for unknown accounts so that unknown users,
// unknown 3PIDs and wrong passwords take comparable time and get the same
// answer, and rehashes bcrypt or outdated argon2id hashes after a
// successful check.
package credentials

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"strings"

	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/passwords"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Identifier names the account a credential is for: either User (as the
// client gave it: a localpart or a full user ID) or Medium and Address.
type Identifier struct {
	User    string
	Medium  string
	Address string
}

// Password is a password credential.
type Password struct {
	Identifier Identifier
	Password   string
}

// ErrInvalid is the one answer to an unknown user, an unknown 3PID, an
// account without a password (guests) and a wrong password.
func ErrInvalid() *matrixerr.Error { return matrixerr.Forbidden("Invalid username or password") }

// ErrDeactivated answers a correct password of a deactivated account.
func ErrDeactivated() *matrixerr.Error {
	return matrixerr.New(http.StatusForbidden, "M_USER_DEACTIVATED", "This account has been deactivated")
}

// IsDeactivated reports whether err is ErrDeactivated.
func IsDeactivated(err error) bool {
	me, ok := matrixerr.As(err)
	return ok && me.Code == "M_USER_DEACTIVATED"
}

// Parse builds a Password from the fields a login body and a UIA auth dict
// share: identifier (a JSON object), or the legacy user, or the legacy
// medium and address.
func Parse(identifier map[string]any, user, medium, address, password string) (Password, error) {
	var id Identifier
	switch {
	case identifier != nil:
		typ, _ := identifier["type"].(string)
		switch typ {
		case "m.id.user":
			u, ok := identifier["user"].(string)
			if !ok || u == "" {
				return Password{}, matrixerr.MissingParam("identifier.user is required for m.id.user")
			}
			id.User = u
		case "m.id.thirdparty":
			m, _ := identifier["medium"].(string)
			a, _ := identifier["address"].(string)
			if m == "" || a == "" {
				return Password{}, matrixerr.MissingParam("identifier.medium and identifier.address are required for m.id.thirdparty")
			}
			id.Medium, id.Address = m, a
		case "m.id.phone":
			// Turning a national number into an MSISDN takes
			// libphonenumber's rules, whose Go port loads all its metadata
			// at start-up (6 MB more idle memory for every server).
			return Password{}, matrixerr.New(http.StatusBadRequest, "M_UNKNOWN",
				`Login with a phone number (m.id.phone) is not supported: use m.id.thirdparty with medium "msisdn" and the number in international format, e.g. +447700900001`)
		default:
			return Password{}, matrixerr.New(http.StatusBadRequest, "M_UNKNOWN", "Unknown login identifier type")
		}
	case user != "":
		id.User = user
	case medium != "" && address != "":
		id.Medium, id.Address = medium, address
	default:
		return Password{}, matrixerr.MissingParam("identifier (or user, or medium and address) is required")
	}
	if password == "" {
		return Password{}, matrixerr.MissingParam("password is required")
	}
	return Password{Identifier: id, Password: password}, nil
}

// FromAuth reads a Password from a UIA auth dict.
func FromAuth(auth map[string]any) (Password, error) {
	str := func(k string) string { s, _ := auth[k].(string); return s }
	ident, _ := auth["identifier"].(map[string]any)
	return Parse(ident, str("user"), str("medium"), str("address"), str("password"))
}

// CanonicalAddress normalises a 3PID address as it is stored: email
// addresses compare case-insensitively, so they are kept lower-case; an
// MSISDN is the international number's digits, so "+44 7700 900-001"
// is 447700900001.
func CanonicalAddress(medium, address string) string {
	address = strings.TrimSpace(address)
	switch medium {
	case "email":
		return strings.ToLower(address)
	case "msisdn":
		return strings.Map(func(r rune) rune {
			switch r {
			case '+', ' ', '-', '.', '(', ')':
				return -1
			}
			return r
		}, address)
	}
	return address
}

// NormalizeUserID turns a localpart or a full user ID into the form user
// IDs are stored in: the localpart lower-cased, and this server's name. A
// user ID of another server is returned unchanged (it names no local
// account).
func NormalizeUserID(user, serverName string) string {
	if !strings.HasPrefix(user, "@") {
		return "@" + strings.ToLower(user) + ":" + serverName
	}
	local, server, ok := strings.Cut(user[1:], ":")
	if !ok || !strings.EqualFold(server, serverName) {
		return user
	}
	return "@" + strings.ToLower(local) + ":" + serverName
}

// Checker verifies password credentials against the users table.
type Checker struct {
	Store      *storage.Store
	Hasher     *passwords.Hasher
	ServerName string
}

// UserID resolves id to a user ID: the normalised user ID for a user
// identifier (which may not exist), the owner of a 3PID, or "" when the
// 3PID is bound to nobody.
func (c *Checker) UserID(ctx context.Context, id Identifier) (string, error) {
	if id.User != "" {
		return NormalizeUserID(id.User, c.ServerName), nil
	}
	var owner string
	err := c.Store.R.NewSelect().Model((*storage.ThreePID)(nil)).Column("user_id").
		Where("medium = ? AND address = ?", id.Medium, CanonicalAddress(id.Medium, id.Address)).
		Scan(ctx, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return owner, err
}

// Check verifies password for userID ("" for nobody). Every failure is
// ErrInvalid after the same amount of hashing; a correct password of a
// deactivated account is ErrDeactivated (told only to who knows the
// password). A successful check upgrades a bcrypt or outdated argon2id hash.
func (c *Checker) Check(ctx context.Context, userID, password string) error {
	var u storage.User
	found := false
	if userID != "" {
		err := c.Store.R.NewSelect().Model(&u).Column("password_hash", "deactivated").
			Where("user_id = ?", userID).Scan(ctx)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
	}
	if !found || u.PasswordHash == "" {
		c.Hasher.DummyVerify(password)
		return ErrInvalid()
	}
	ok, rehash, err := c.Hasher.Verify(password, u.PasswordHash)
	if err != nil || !ok {
		// A hash Myelin cannot read is a failed login, not a server error:
		// the account's owner resets it with `myelin user passwd`.
		return ErrInvalid()
	}
	if u.Deactivated {
		return ErrDeactivated()
	}
	if rehash {
		if h, err := c.Hasher.Hash(password); err == nil {
			// Compare-and-set: a password changed meanwhile is not overwritten.
			if _, err := c.Store.DB.NewUpdate().Model((*storage.User)(nil)).Set("password_hash = ?", h).
				Where("user_id = ? AND password_hash = ?", userID, u.PasswordHash).Exec(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}
