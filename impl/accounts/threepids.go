package accounts

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
)

// ThreePID is one 3PID bound to an account. Myelin binds 3PIDs only by
// the admin CLI (it sends no verification mail or SMS), so a 3PID is
// validated when it is added.
type ThreePID struct {
	Medium      string
	Address     string
	AddedAt     int64 // Unix ms
	ValidatedAt int64 // Unix ms
}

// ListThreePIDs answers GET /account/3pid: the caller's bound 3PIDs,
// oldest first.
func (s *Service) ListThreePIDs(ctx context.Context, p auth.Principal) ([]ThreePID, error) {
	var rows []storage.ThreePID
	err := s.Store.R.NewSelect().Model(&rows).Where("user_id = ?", p.UserID).
		Order("added_ts", "medium", "address").Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	out := make([]ThreePID, len(rows))
	for i, r := range rows {
		out[i] = ThreePID{Medium: r.Medium, Address: r.Address, AddedAt: r.AddedTS, ValidatedAt: r.AddedTS}
	}
	return out, nil
}

// UnbindNoSupport is the id_server_unbind_result of every 3PID removal:
// Myelin binds nothing at identity servers, so it knows none to unbind
// from.
const UnbindNoSupport = "no-support"

// DeleteThreePID answers POST /account/3pid/delete: it unbinds the
// caller's 3PID medium/address, normalised as login by 3PID normalises it
// (an email address compares case-insensitively, an MSISDN by its
// digits). Removing a 3PID that is not bound to the caller changes
// nothing and is not an error (the state asked for holds; the answer does
// not tell whether another account holds it). Guests and suspended
// accounts may not remove 3PIDs.
func (s *Service) DeleteThreePID(ctx context.Context, p auth.Principal, medium, address string) (string, error) {
	if p.IsGuest {
		return "", errGuestForbidden("Guests have no 3PIDs")
	}
	if err := sessions.NotSuspended(p); err != nil {
		return "", err
	}
	if medium != "email" && medium != "msisdn" {
		return "", matrixerr.InvalidParam("medium must be email or msisdn")
	}
	address = credentials.CanonicalAddress(medium, address)
	if address == "" {
		return "", matrixerr.InvalidParam("address must not be empty")
	}
	_, err := s.Store.DB.NewDelete().Model((*storage.ThreePID)(nil)).
		Where("medium = ? AND address = ? AND user_id = ?", medium, address, p.UserID).Exec(ctx)
	if err != nil {
		return "", err
	}
	return UnbindNoSupport, nil
}

// RegistrationTokenValid answers GET
// /register/m.login.registration_token/validity: whether token could be
// used to register now (it exists, has not expired, and has a use left
// that no pending registration holds). It does not use the token up.
// Rate limited per IP. With registration disabled the answer is 403
// M_FORBIDDEN, as the spec asks; with open registration no token is valid
// (none is asked for).
func (s *Service) RegistrationTokenValid(ctx context.Context, token, ip string) (bool, error) {
	if err := s.Limits.Allow(ip, ""); err != nil {
		return false, err
	}
	switch s.Config.Registration {
	case config.RegistrationToken:
	case config.RegistrationOpen:
		return false, nil
	default:
		return false, matrixerr.Forbidden("Registration is not enabled on this homeserver.")
	}
	if !uia.ValidRegistrationToken(token) {
		return false, nil
	}
	return s.Store.R.NewSelect().Model((*storage.RegistrationToken)(nil)).
		Where("token = ?", token).
		Where("expiry_ts IS NULL OR expiry_ts > ?", time.Now().UnixMilli()).
		Where("uses_allowed IS NULL OR pending + completed < uses_allowed").
		Exists(ctx)
}
