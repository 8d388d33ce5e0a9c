package oauth

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// Device grant states.
const (
	devicePending  = "pending"
	deviceApproved = "approved"
	deviceDenied   = "denied"
	deviceDone     = "done"
)

const deviceCodePrefix = "myl_devcode_"

// DeviceAuthorization is the device authorisation response (RFC 8628
// §3.2).
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// newUserCode is 8 characters of deviceCodeRunes (20^8, about 34.6 bits)
// shown as XXXX-XXXX; entry is rate limited and needs a signed-in user.
func newUserCode() string {
	var b strings.Builder
	for i := range 8 {
		if i == 4 {
			b.WriteByte('-')
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(deviceCodeRunes))))
		b.WriteByte(deviceCodeRunes[n.Int64()])
	}
	return b.String()
}

// NormalizeUserCode upper-cases a typed user code and adds the hyphen, so
// "wdjb mjht" and "WDJB-MJHT" are the same code.
func NormalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	c := b.String()
	if len(c) != 8 {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// AuthorizeDevice answers the device authorisation endpoint.
func (s *Service) AuthorizeDevice(ctx context.Context, form url.Values, ip string) (DeviceAuthorization, error) {
	if err := s.allow(ip); err != nil {
		return DeviceAuthorization{}, err
	}
	client, err := s.publicClient(ctx, form)
	if err != nil {
		return DeviceAuthorization{}, err
	}
	if !client.HasGrant(GrantDeviceCode) {
		return DeviceAuthorization{}, oauthErr(http.StatusBadRequest, "unauthorized_client", "the client did not register the device_code grant")
	}
	if form.Get("prompt") != "" {
		return DeviceAuthorization{}, invalidRequest("prompt is not supported with the device authorisation grant")
	}
	scope, err := ParseScope(form.Get("scope"))
	if err != nil {
		return DeviceAuthorization{}, oauthErr(http.StatusBadRequest, "invalid_scope", strings.TrimPrefix(err.Error(), "invalid_scope: "))
	}
	now := s.now()
	ttl := s.Config.OAuth.DeviceCodeTTL
	interval := int64(s.Config.OAuth.DeviceInterval.Seconds())
	dc := tokens.NewRefreshLikeToken(deviceCodePrefix, tokens.AccessTokenBytes)
	row := storage.OAuthDeviceGrant{DeviceCodeHash: tokens.HashToken(dc).String(), ClientID: client.ClientID,
		Scope: scope.String(), DeviceID: scope.DeviceID, State: devicePending, IntervalS: interval,
		CreatedTS: now.UnixMilli(), ExpiresTS: now.Add(ttl).UnixMilli()}
	if _, err := s.Store.DB.NewDelete().Model((*storage.OAuthDeviceGrant)(nil)).
		Where("expires_ts < ?", now.Add(-ttl).UnixMilli()).Exec(ctx); err != nil {
		return DeviceAuthorization{}, err
	}
	for try := 0; ; try++ {
		row.UserCode = newUserCode()
		res, err := s.Store.DB.NewInsert().Model(&row).On("CONFLICT (user_code) DO NOTHING").Exec(ctx)
		if err != nil {
			return DeviceAuthorization{}, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			break
		}
		if try == 5 {
			return DeviceAuthorization{}, errors.New("oauth: could not allocate a user code")
		}
	}
	link := s.url(PathLink)
	return DeviceAuthorization{DeviceCode: dc, UserCode: row.UserCode, VerificationURI: link,
		VerificationURIComplete: link + "?user_code=" + url.QueryEscape(row.UserCode),
		ExpiresIn:               int64(ttl.Seconds()), Interval: interval}, nil
}

// PendingDevice is a device grant waiting for a user's decision.
type PendingDevice struct {
	UserCode string
	Client   *Client
	Scope    Scope
}

// ErrUnknownUserCode answers a user code that is unknown, expired or
// already decided.
var ErrUnknownUserCode = errors.New("oauth: unknown or expired code")

// LookupUserCode finds the pending grant of a user code.
func (s *Service) LookupUserCode(ctx context.Context, userCode string) (*PendingDevice, error) {
	code := NormalizeUserCode(userCode)
	var g storage.OAuthDeviceGrant
	err := s.Store.R.NewSelect().Model(&g).Where("user_code = ?", code).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && (g.State != devicePending || s.now().UnixMilli() >= g.ExpiresTS)) {
		return nil, ErrUnknownUserCode
	}
	if err != nil {
		return nil, err
	}
	client, err := s.Client(ctx, g.ClientID)
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, ErrUnknownUserCode
	}
	scope, err := ParseScope(g.Scope)
	if err != nil {
		return nil, err
	}
	return &PendingDevice{UserCode: code, Client: client, Scope: scope}, nil
}

// DecideDevice records userID's decision on a pending user code.
func (s *Service) DecideDevice(ctx context.Context, userCode, userID string, approve bool) error {
	state := deviceDenied
	if approve {
		state = deviceApproved
	}
	res, err := s.Store.DB.NewUpdate().Model((*storage.OAuthDeviceGrant)(nil)).
		Set("state = ?", state).Set("user_id = ?", userID).
		Where("user_code = ? AND state = ? AND expires_ts > ?", NormalizeUserCode(userCode), devicePending, s.now().UnixMilli()).
		Exec(ctx)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrUnknownUserCode
	}
	return nil
}

// pollDevice answers a token request of the device grant (RFC 8628 §3.5).
func (s *Service) pollDevice(ctx context.Context, form url.Values, ip string) (TokenResponse, error) {
	client, err := s.publicClient(ctx, form)
	if err != nil {
		return TokenResponse{}, err
	}
	dc := form.Get("device_code")
	if dc == "" {
		return TokenResponse{}, invalidRequest("device_code is required")
	}
	h := tokens.HashToken(dc).String()
	now := s.now()
	nowMS := now.UnixMilli()
	var out TokenResponse
	var answer error
	err = s.commit(ctx, func(ctx context.Context, tx bun.Tx) ([]string, error) {
		var g storage.OAuthDeviceGrant
		q := tx.NewSelect().Model(&g).Where("device_code_hash = ?", h)
		if s.Store.Dialect == storage.Postgres {
			q = q.For("UPDATE")
		}
		if err := q.Scan(ctx); errors.Is(err, sql.ErrNoRows) {
			return nil, invalidGrant("Unknown device_code")
		} else if err != nil {
			return nil, err
		}
		if !tokens.Equal(g.ClientID, client.ClientID) {
			return nil, invalidGrant("The device_code was issued to another client")
		}
		if nowMS >= g.ExpiresTS {
			return nil, oauthErr(http.StatusBadRequest, "expired_token", "The device_code has expired")
		}
		switch g.State {
		case deviceDenied:
			return nil, oauthErr(http.StatusBadRequest, "access_denied", "The user declined the request")
		case deviceDone:
			return nil, invalidGrant("The device_code was already used")
		case devicePending:
			upd := tx.NewUpdate().Model((*storage.OAuthDeviceGrant)(nil)).Set("last_poll_ts = ?", nowMS).Where("device_code_hash = ?", h)
			if nowMS-g.LastPollTS < g.IntervalS*1000 {
				// Too fast: the interval grows by 5 seconds (§3.5).
				upd = upd.Set("interval_s = ?", g.IntervalS+5)
				answer = oauthErr(http.StatusBadRequest, "slow_down", "Polling too fast")
			} else {
				answer = oauthErr(http.StatusBadRequest, "authorization_pending", "The user has not decided yet")
			}
			_, err := upd.Exec(ctx)
			return nil, err
		}
		if g.UserID == nil {
			return nil, errors.New("oauth: approved device grant without a user")
		}
		if _, err := tx.NewUpdate().Model((*storage.OAuthDeviceGrant)(nil)).Set("state = ?", deviceDone).
			Where("device_code_hash = ?", h).Exec(ctx); err != nil {
			return nil, err
		}
		scope, err := ParseScope(g.Scope)
		if err != nil {
			return nil, err
		}
		var revoked []string
		out, revoked, err = s.issue(ctx, tx, grantee{client: client, userID: *g.UserID, scope: scope, authTime: now}, ip)
		return revoked, err
	})
	if err == nil && answer != nil {
		err = answer
	}
	return out, err
}
