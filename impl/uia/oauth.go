package uia

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
)

// StageOAuth is the m.oauth stage (spec v1.17): the user approves the
// operation on the account page, whose URL the challenge carries in
// params["m.oauth"]["url"]; the client then retries with the session alone.
const StageOAuth = "m.oauth"

// Account management actions (spec v1.18, "Account management URL
// actions") that the account page serves.
const (
	ActionDevicesList       = "org.matrix.devices_list"
	ActionDeviceView        = "org.matrix.device_view"
	ActionDeviceDelete      = "org.matrix.device_delete"
	ActionAccountDeactivate = "org.matrix.account_deactivate"
	ActionCrossSigningReset = "org.matrix.cross_signing_reset"
)

// Actions lists the actions the account page serves (for the server
// metadata's account_management_actions_supported).
func Actions() []string {
	return []string{ActionDevicesList, ActionDeviceView, ActionDeviceDelete, ActionAccountDeactivate, ActionCrossSigningReset}
}

// ApprovalTTL is how long an approval given on the account page lets its
// operation through.
const ApprovalTTL = 10 * time.Minute

// OpCrossSigningUpload binds sessions (and approvals) to the replacement
// of cross-signing keys (POST /keys/device_signing/upload).
func OpCrossSigningUpload() string { return "keys/device_signing/upload" }

// OAuthSessions tells whether a device is an OAuth 2.0 session (impl/oauth
// implements it; the default says no device is).
type OAuthSessions interface {
	IsOAuthSession(ctx context.Context, userID, deviceID string) (bool, error)
}

// NoOAuthSessions is the OAuthSessions of a server without the OAuth API.
type NoOAuthSessions struct{}

func (NoOAuthSessions) IsOAuthSession(context.Context, string, string) (bool, error) {
	return false, nil
}

// Link names the place of the account page that approves an operation.
type Link struct {
	Action   string
	DeviceID string
}

// AccountURL is the account page's URL for link (Engine.AccountURL with
// action and device_id), "" when the engine has no account page.
func (e *Engine) AccountURL(link Link) string {
	if e.AccountPage == "" {
		return ""
	}
	q := url.Values{}
	if link.Action != "" {
		q.Set("action", link.Action)
	}
	if link.DeviceID != "" {
		q.Set("device_id", link.DeviceID)
	}
	if len(q) == 0 {
		return e.AccountPage
	}
	return e.AccountPage + "?" + q.Encode()
}

// FlowsFor returns the flows (and the challenge's params) of an operation
// on one's own account for the caller's device: m.login.password, or for
// an OAuth session, which has no password to offer, m.oauth with the URL
// of link on the account page.
func (e *Engine) FlowsFor(ctx context.Context, userID, deviceID string, link Link) ([]Flow, map[string]any, error) {
	if e.OAuth != nil && e.AccountPage != "" && deviceID != "" {
		isOAuth, err := e.OAuth.IsOAuthSession(ctx, userID, deviceID)
		if err != nil {
			return nil, nil, err
		}
		if isOAuth {
			return []Flow{{Stages: []string{StageOAuth}}},
				map[string]any{StageOAuth: map[string]any{"url": e.AccountURL(link)}}, nil
		}
	}
	return []Flow{{Stages: []string{StagePassword}}}, nil, nil
}

// Approve lets op of userID through without user-interactive auth, once,
// within ApprovalTTL (the account page calls it; a new approval replaces
// an older one).
func (e *Engine) Approve(ctx context.Context, userID, op string) error {
	now := e.now()
	return e.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*storage.UIAApproval)(nil)).
			Where("(user_id = ? AND operation = ?) OR expires_ts <= ?", userID, op, now.UnixMilli()).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewInsert().Model(&storage.UIAApproval{UserID: userID, Operation: op,
			ExpiresTS: now.Add(ApprovalTTL).UnixMilli()}).Exec(ctx)
		return err
	})
}

// Approved reports whether op of userID has an unexpired approval, and
// until when.
func (e *Engine) Approved(ctx context.Context, userID, op string) (time.Time, bool, error) {
	var a storage.UIAApproval
	err := e.Store.R.NewSelect().Model(&a).Where("user_id = ? AND operation = ? AND expires_ts > ?",
		userID, op, e.now().UnixMilli()).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.UnixMilli(a.ExpiresTS), true, nil
}

// ConsumeApproval uses up the approval of op of userID inside tx (the
// operation's transaction, so an operation that fails keeps it). It
// reports whether there was one: DELETE … RETURNING gives it to exactly
// one request, also across processes.
func (e *Engine) ConsumeApproval(ctx context.Context, tx bun.IDB, userID, op string) (bool, error) {
	var gone []storage.UIAApproval
	err := tx.NewDelete().Model((*storage.UIAApproval)(nil)).
		Where("user_id = ? AND operation = ? AND expires_ts > ?", userID, op, e.now().UnixMilli()).
		Returning("user_id").Scan(ctx, &gone)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return len(gone) > 0, err
}

// DeleteApprovals removes every approval of userID inside tx (an
// OnDeactivate hook of accounts).
func DeleteApprovals(ctx context.Context, tx bun.IDB, userID string) error {
	_, err := tx.NewDelete().Model((*storage.UIAApproval)(nil)).Where("user_id = ?", userID).Exec(ctx)
	return err
}
