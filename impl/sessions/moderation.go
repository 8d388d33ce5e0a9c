package sessions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Flag is an account flag that admins set.
type Flag string

const (
	FlagAdmin     Flag = "admin"
	FlagLocked    Flag = "locked"
	FlagSuspended Flag = "suspended"
)

// Status is an account's moderation state.
type Status struct {
	Admin     bool `bun:"admin"`
	Locked    bool `bun:"locked"`
	Suspended bool `bun:"suspended"`
}

func errNoSuchUser(userID string) *matrixerr.Error {
	return matrixerr.NotFound("User not found: " + userID)
}

// Status returns the moderation state of userID (404 M_NOT_FOUND unless it
// is an active account).
func (s *Service) Status(ctx context.Context, userID string) (Status, error) {
	var st Status
	err := s.Store.R.NewSelect().Model((*storage.User)(nil)).Column("admin", "locked", "suspended").
		Where("user_id = ? AND deactivated = ?", userID, false).Scan(ctx, &st)
	if errors.Is(err, sql.ErrNoRows) {
		return Status{}, errNoSuchUser(userID)
	}
	return st, err
}

// SetFlag sets flag of userID (an active account) to on, as the admin CLI
// does, without the checks of the admin endpoints. Every process's token
// cache sees the change within a second; the user's tokens stay valid.
func (s *Service) SetFlag(ctx context.Context, userID string, flag Flag, on bool) error {
	switch flag {
	case FlagAdmin, FlagLocked, FlagSuspended:
	default:
		return fmt.Errorf("sessions: unknown flag %q", flag)
	}
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		return s.setFlag(ctx, tx, userID, flag, on)
	})
}

func (s *Service) setFlag(ctx context.Context, tx bun.IDB, userID string, flag Flag, on bool) ([]string, error) {
	res, err := tx.NewUpdate().Model((*storage.User)(nil)).Set(string(flag)+" = ?", on).
		Where("user_id = ? AND deactivated = ?", userID, false).Exec(ctx)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, errNoSuchUser(userID)
	}
	// Cached principals carry the flags: drop them everywhere.
	hashes, err := userTokenHashes(ctx, tx, userID)
	if err != nil {
		return nil, err
	}
	return hashes, auth.PublishRevoked(ctx, tx, hashes)
}

// authorize applies the rules of the admin endpoints, in the spec's order
// (authorisation before any lookup, so non-admins learn nothing about
// accounts): the caller must be a server admin (403 M_FORBIDDEN); the
// target must be a user ID of this server (400 M_INVALID_PARAM) and an
// active account (404 M_NOT_FOUND); it may not be another admin (403), and
// a change may not target the caller (403).
// whois may look up another admin.
type access int

const (
	readFlag access = iota
	changeFlag
	lookup
)

func (s *Service) authorize(ctx context.Context, db bun.IDB, caller auth.Principal, target string, mode access) (Status, error) {
	var callerAdmin bool
	if err := db.NewSelect().Model((*storage.User)(nil)).Column("admin").
		Where("user_id = ? AND deactivated = ?", caller.UserID, false).Scan(ctx, &callerAdmin); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Status{}, err
	}
	if !callerAdmin {
		return Status{}, matrixerr.Forbidden("Requesting user is not a server administrator.")
	}
	server, ok := mxid.ServerName(target)
	if !ok || server != s.Config.ServerName {
		return Status{}, matrixerr.InvalidParam("User does not belong to the local server.")
	}
	var st Status
	err := db.NewSelect().Model((*storage.User)(nil)).Column("admin", "locked", "suspended").
		Where("user_id = ? AND deactivated = ?", target, false).Scan(ctx, &st)
	if errors.Is(err, sql.ErrNoRows) {
		return Status{}, errNoSuchUser(target)
	}
	if err != nil {
		return Status{}, err
	}
	if target == caller.UserID {
		if mode == changeFlag {
			return Status{}, matrixerr.Forbidden("Administrators cannot lock or suspend their own account.")
		}
		return st, nil
	}
	if st.Admin && mode != lookup {
		return Status{}, matrixerr.Forbidden("The target user is another server administrator.")
	}
	return st, nil
}

// AdminGet answers GET /admin/lock/{userId} (flag FlagLocked) and GET
// /admin/suspend/{userId} (FlagSuspended) for caller.
func (s *Service) AdminGet(ctx context.Context, caller auth.Principal, target string, flag Flag) (bool, error) {
	st, err := s.authorize(ctx, s.Store.R, caller, target, readFlag)
	if err != nil {
		return false, err
	}
	return st.get(flag), nil
}

// AdminSet answers PUT /admin/lock/{userId} and PUT
// /admin/suspend/{userId}: it sets flag (FlagLocked or FlagSuspended) of
// target to on and returns the new value.
func (s *Service) AdminSet(ctx context.Context, caller auth.Principal, target string, flag Flag, on bool) (bool, error) {
	if flag != FlagLocked && flag != FlagSuspended {
		return false, fmt.Errorf("sessions: AdminSet: flag %q", flag)
	}
	err := s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		if _, err := s.authorize(ctx, tx, caller, target, changeFlag); err != nil {
			return nil, err
		}
		return s.setFlag(ctx, tx, target, flag, on)
	})
	return on, err
}

func (st Status) get(flag Flag) bool {
	switch flag {
	case FlagAdmin:
		return st.Admin
	case FlagLocked:
		return st.Locked
	}
	return st.Suspended
}

// Connection is where a session was last seen.
type Connection struct {
	IP       string
	LastSeen int64 // Unix ms
}

// WhoIs is the admin view of a user's sessions: one session a device (a
// device holds one access token), with the last connection seen.
type WhoIs struct {
	UserID string
	// Devices maps device IDs to their sessions' connections (empty when
	// never seen).
	Devices map[string][]Connection
}

// WhoIs answers GET /admin/whois/{userId}: allowed to server admins and to
// the user themself (403 M_FORBIDDEN otherwise, before any lookup); 400
// M_INVALID_PARAM for a user of another server, 404 for an unknown or
// deactivated one.
func (s *Service) WhoIs(ctx context.Context, caller auth.Principal, target string) (WhoIs, error) {
	if target != caller.UserID {
		if _, err := s.authorize(ctx, s.Store.R, caller, target, lookup); err != nil {
			return WhoIs{}, err
		}
	}
	return s.whois(ctx, target)
}

// AdminWhoIs is WhoIs for the admin CLI.
func (s *Service) AdminWhoIs(ctx context.Context, userID string) (WhoIs, error) {
	if _, err := s.Status(ctx, userID); err != nil {
		return WhoIs{}, err
	}
	return s.whois(ctx, userID)
}

func (s *Service) whois(ctx context.Context, userID string) (WhoIs, error) {
	ds, err := s.Devices.List(ctx, userID)
	if err != nil {
		return WhoIs{}, err
	}
	out := WhoIs{UserID: userID, Devices: make(map[string][]Connection, len(ds))}
	for _, d := range ds {
		var conns []Connection
		if d.LastSeenTS != nil {
			c := Connection{LastSeen: *d.LastSeenTS}
			if d.LastSeenIP != nil {
				c.IP = *d.LastSeenIP
			}
			conns = append(conns, c)
		}
		out.Devices[d.DeviceID] = conns
	}
	return out, nil
}
