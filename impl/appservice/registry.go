package appservice

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
)

// set is one loaded generation of registrations.
type set struct {
	regs    []*Registration
	byToken map[[32]byte]*Registration
}

// Registry holds the loaded registrations. The zero value is not usable;
// use NewRegistry. It is safe for concurrent use: Reload swaps the whole
// set at once, and a request sees either the old or the new one.
type Registry struct {
	serverName string
	files      []string
	cur        atomic.Pointer[set]
}

// NewRegistry is a registry without registrations.
func NewRegistry(serverName string) *Registry {
	r := &Registry{serverName: serverName}
	r.cur.Store(&set{byToken: map[[32]byte]*Registration{}})
	return r
}

// Load reads and checks files and, if all are good, makes them the
// registry's set (and the files Reload reads again).
func (r *Registry) Load(files []string) error {
	regs := make([]*Registration, 0, len(files))
	for _, f := range files {
		reg, err := LoadFile(f, r.serverName)
		if err != nil {
			return err
		}
		regs = append(regs, reg)
	}
	if err := checkSet(regs); err != nil {
		return err
	}
	s := &set{regs: regs, byToken: make(map[[32]byte]*Registration, len(regs))}
	for _, reg := range regs {
		s.byToken[reg.tokenHash] = reg
	}
	r.files = append([]string(nil), files...)
	r.cur.Store(s)
	return nil
}

// Reload reads the files of the last Load again. On an error the loaded
// set stays as it was.
func (r *Registry) Reload() error { return r.Load(r.files) }

// All returns the loaded registrations, by id.
func (r *Registry) All() []*Registration {
	regs := append([]*Registration(nil), r.cur.Load().regs...)
	sort.Slice(regs, func(i, j int) bool { return regs[i].ID < regs[j].ID })
	return regs
}

// Any reports whether at least one appservice is registered.
func (r *Registry) Any() bool { return r != nil && len(r.cur.Load().regs) > 0 }

// ByToken returns the appservice whose as_token is token, or nil. The
// lookup is by the token's SHA-256, and the token is then compared in
// constant time.
func (r *Registry) ByToken(token string) *Registration {
	if r == nil || token == "" {
		return nil
	}
	reg := r.cur.Load().byToken[sha256.Sum256([]byte(token))]
	if reg == nil || subtle.ConstantTimeCompare([]byte(reg.ASToken), []byte(token)) != 1 {
		return nil
	}
	return reg
}

// ExclusiveOwner returns the appservice that claims userID exclusively
// (as its sender or in an exclusive user namespace), or nil.
func (r *Registry) ExclusiveOwner(userID string) *Registration {
	if r == nil {
		return nil
	}
	for _, reg := range r.cur.Load().regs {
		if reg.Exclusive(userID) {
			return reg
		}
	}
	return nil
}

// ErrExclusive answers a registration or login of a user ID that is not
// the caller's to take: 400 M_EXCLUSIVE.
func ErrExclusive(msg string) *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_EXCLUSIVE", msg)
}

// ErrUnknownDevice answers a device_id that is not one of the asserted
// user's devices (v1.17): 400 M_UNKNOWN_DEVICE.
func ErrUnknownDevice() *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_UNKNOWN_DEVICE", "Application service trying to use a device that doesn't exist")
}

// Assert is identity assertion: reg acts as userID ("" for its sender)
// and, if deviceID is not "", as that device of the user. A user outside
// reg's namespaces, or one not registered, is 403 M_FORBIDDEN (the sender
// is registered on first use); a device that is not the user's is 400
// M_UNKNOWN_DEVICE.
func Assert(ctx context.Context, store *storage.Store, reg *Registration, userID, deviceID string) (auth.Principal, error) {
	if userID == "" {
		userID = reg.Sender
	}
	if !reg.InNamespace(userID) {
		return auth.Principal{}, matrixerr.Forbidden("Application service cannot masquerade as this user")
	}
	var u storage.User
	err := store.R.NewSelect().Model(&u).Column("deactivated", "admin", "locked", "suspended").
		Where("user_id = ?", userID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) && userID == reg.Sender {
		if err = EnsureSender(ctx, store, reg); err == nil {
			u = storage.User{}
		}
	}
	if errors.Is(err, sql.ErrNoRows) || (err == nil && u.Deactivated) {
		return auth.Principal{}, matrixerr.Forbidden("Application service has not registered this user")
	}
	if err != nil {
		return auth.Principal{}, err
	}
	if deviceID != "" {
		ok, err := store.R.NewSelect().Model((*storage.Device)(nil)).
			Where("user_id = ? AND device_id = ?", userID, deviceID).Exists(ctx)
		if err != nil {
			return auth.Principal{}, err
		}
		if !ok {
			return auth.Principal{}, ErrUnknownDevice()
		}
	}
	return auth.Principal{UserID: userID, DeviceID: deviceID, AppService: reg.ID,
		Admin: u.Admin, Locked: u.Locked, Suspended: u.Suspended}, nil
}

// EnsureSender registers reg's sender user (passwordless) if it is not
// registered yet; concurrent calls in any process are harmless.
func EnsureSender(ctx context.Context, store *storage.Store, reg *Registration) error {
	u := storage.User{UserID: reg.Sender, CreatedTS: time.Now().UnixMilli()}
	_, err := store.DB.NewInsert().Model(&u).On("CONFLICT (user_id) DO NOTHING").Exec(ctx)
	return err
}

type tokenKey struct{}

// WithRequestToken returns ctx carrying the access token the request
// presented ("" for none), for the operations that take an as_token
// without requiring authentication (POST /register and /login with
// m.login.application_service).
func WithRequestToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// Caller returns the appservice whose as_token the request presented: 401
// M_MISSING_TOKEN without a token, 401 M_UNKNOWN_TOKEN when the token is
// not an as_token.
func (r *Registry) Caller(ctx context.Context) (*Registration, error) {
	tok, _ := ctx.Value(tokenKey{}).(string)
	if tok == "" {
		return nil, matrixerr.MissingToken()
	}
	reg := r.ByToken(tok)
	if reg == nil {
		return nil, matrixerr.UnknownToken()
	}
	return reg, nil
}

// CountUsers counts, for each registration of r, the registered (not
// deactivated) users in its namespaces, its sender included, reading the
// user IDs in pages (for the admin CLI).
func (r *Registry) CountUsers(ctx context.Context, store *storage.Store) (map[string]int, error) {
	regs := r.All()
	counts := make(map[string]int, len(regs))
	after := ""
	for {
		var ids []string
		err := store.R.NewSelect().Model((*storage.User)(nil)).Column("user_id").
			Where("deactivated = ?", false).Where("user_id > ?", after).
			Order("user_id").Limit(1000).Scan(ctx, &ids)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		for _, id := range ids {
			for _, reg := range regs {
				if reg.InNamespace(id) {
					counts[reg.ID]++
				}
			}
		}
		if len(ids) < 1000 {
			return counts, nil
		}
		after = ids[len(ids)-1]
	}
}
