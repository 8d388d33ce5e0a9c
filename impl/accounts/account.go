package accounts

import (
	"context"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
)

// ChangePasswordRequest is one POST /account/password.
type ChangePasswordRequest struct {
	NewPassword string
	// LogoutDevices deletes every other device and its token (the spec's
	// default is true).
	LogoutDevices bool
	Auth          map[string]any
	IP            string
}

// ChangePassword sets the caller's password after m.login.password UIA.
// The caller's own device and token stay.
func (s *Service) ChangePassword(ctx context.Context, p auth.Principal, req ChangePasswordRequest) error {
	if p.IsGuest {
		return errGuestForbidden("Guests cannot change a password")
	}
	if err := s.Limits.Allow(req.IP, p.UserID); err != nil {
		return err
	}
	// Checked before UIA, so a weak password costs the user no round of
	// authentication.
	if err := CheckPasswordPolicy(s.Config.Password, req.NewPassword); err != nil {
		return err
	}
	res, err := s.UIA.Authenticate(ctx, uia.Request{Operation: uia.OpChangePassword(), UserID: p.UserID, Flows: passwordFlows, Auth: req.Auth})
	if err != nil || res.Replay != nil {
		return err
	}
	hash, err := s.Credentials.Hasher.Hash(req.NewPassword)
	if err != nil {
		return err
	}
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		revoked, err := s.setPassword(ctx, tx, p.UserID, hash, req.LogoutDevices, p.DeviceID)
		if err != nil {
			return nil, err
		}
		return revoked, s.UIA.Finish(ctx, tx, res.SessionID, struct{}{})
	})
}

// setPassword stores a new hash and, if logout, deletes every device of
// userID but keep ("" for all).
func (s *Service) setPassword(ctx context.Context, tx bun.IDB, userID, hash string, logout bool, keep string) ([]string, error) {
	res, err := tx.NewUpdate().Model((*storage.User)(nil)).Set("password_hash = ?", hash).
		Where("user_id = ? AND deactivated = ?", userID, false).Exec(ctx)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, errNoSuchUser(userID)
	}
	if !logout {
		return nil, nil
	}
	_, revoked, err := s.Devices.DeleteAllDevices(ctx, tx, userID, keep)
	return revoked, err
}

// Deactivate deactivates the caller's account after m.login.password UIA;
// erase also removes what Myelin holds about the user beyond the ID.
func (s *Service) Deactivate(ctx context.Context, p auth.Principal, authDict map[string]any, ip string, erase bool) error {
	if p.IsGuest {
		return errGuestForbidden("Guests cannot deactivate their account")
	}
	if err := s.Limits.Allow(ip, p.UserID); err != nil {
		return err
	}
	// An OAuth session has no password to give: it is sent to the account
	// page (m.oauth), where deactivating is done.
	flows, params, err := s.UIA.FlowsFor(ctx, p.UserID, p.DeviceID, uia.Link{Action: uia.ActionAccountDeactivate})
	if err != nil {
		return err
	}
	res, err := s.UIA.Authenticate(ctx, uia.Request{Operation: uia.OpDeactivate(), UserID: p.UserID, Flows: flows,
		ChallengeParams: params, Auth: authDict})
	if err != nil || res.Replay != nil {
		return err
	}
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		revoked, err := s.deactivate(ctx, tx, p.UserID, erase, res.SessionID)
		if err != nil {
			return nil, err
		}
		return revoked, s.UIA.Finish(ctx, tx, res.SessionID, struct{}{})
	})
}

// DeactivateWithPassword deactivates userID after checking its password
// (the account page: a signed-in user re-enters it), with the same
// effects as POST /account/deactivate and the same rate limits as a
// login. A wrong password is 403 M_FORBIDDEN.
func (s *Service) DeactivateWithPassword(ctx context.Context, userID, password, ip string, erase bool) error {
	if err := s.Limits.Allow(ip, userID); err != nil {
		return err
	}
	attempt, err := s.Limits.BeginLogin(ctx, userID)
	if err != nil {
		return err
	}
	if err := s.Credentials.Check(ctx, userID, password); err != nil {
		return err
	}
	if err := attempt.Succeeded(ctx); err != nil {
		return err
	}
	return s.commitRevoking(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		return s.deactivate(ctx, tx, userID, erase, "")
	})
}

// deactivate marks userID deactivated and removes its devices (with their
// display names, keys, access and refresh tokens), login tokens and 3PIDs.
// The row stays, so the user ID is never registered again; the password
// hash stays too, so a login with the right password learns
// M_USER_DEACTIVATED and any other one the usual 403. erase (v1.10) also
// drops the password hash (a login then learns only the usual 403), the
// cross-signing keys and signatures, the user's UIA sessions (but keepSession, the one deactivating, which keeps
// only its answer until it expires) and rate-limit buckets, and marks the
// row erased: nothing but the ID is left.
func (s *Service) deactivate(ctx context.Context, tx bun.IDB, userID string, erase bool, keepSession string) ([]string, error) {
	q := tx.NewUpdate().Model((*storage.User)(nil)).Set("deactivated = ?", true)
	if erase {
		q = q.Set("erased = ?", true).Set("password_hash = NULL").
			Set("admin = ?", false).Set("locked = ?", false).Set("suspended = ?", false)
	}
	res, err := q.Where("user_id = ? AND deactivated = ?", userID, false).Exec(ctx)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, errNoSuchUser(userID)
	}
	_, revoked, err := s.Devices.DeleteAllDevices(ctx, tx, userID, "")
	if err != nil {
		return nil, err
	}
	for _, m := range []any{(*storage.LoginToken)(nil), (*storage.ThreePID)(nil)} {
		if _, err := tx.NewDelete().Model(m).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return nil, err
		}
	}
	for _, h := range s.OnDeactivate {
		if err := h(ctx, tx, userID); err != nil {
			return nil, err
		}
	}
	if erase {
		if _, err := tx.NewDelete().Model((*storage.UIASession)(nil)).Where("user_id = ? AND session_id <> ?", userID, keepSession).Exec(ctx); err != nil {
			return nil, err
		}
		if _, err := tx.NewDelete().Model((*storage.CrossSigningKey)(nil)).Where("user_id = ?", userID).Exec(ctx); err != nil {
			return nil, err
		}
		if _, err := tx.NewDelete().Model((*storage.KeySignature)(nil)).
			Where("target_user_id = ? OR signer_user_id = ?", userID, userID).Exec(ctx); err != nil {
			return nil, err
		}
		if _, err := tx.NewDelete().Model((*storage.RateLimitBucket)(nil)).
			Where(`"key" IN (?)`, bun.In([]string{"login:" + userID, "login_token:" + userID})).Exec(ctx); err != nil {
			return nil, err
		}
	}
	return revoked, nil
}
