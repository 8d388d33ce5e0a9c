package sessions

import "github.com/myelin-hs/myelin/impl/auth"

// Capabilities are what GET /capabilities tells caller about the
// operations of Myelin's slice, as they truly are for this server and
// this caller.
type Capabilities struct {
	// ChangePassword: POST /account/password (not for guests, who have
	// no password).
	ChangePassword bool
	// ThreePIDChanges: 3PIDs can be removed (POST /account/3pid/delete;
	// adding one needs email or SMS verification, which Myelin does not
	// send, and says so). Not for guests, nor for suspended accounts,
	// which may not remove admin contacts.
	ThreePIDChanges bool
	// GetLoginToken: POST /login/get_token (config get_login_token; not
	// for guests).
	GetLoginToken bool
	// Lock and Suspend: the admin endpoints (server admins only).
	Lock, Suspend bool
}

// Capabilities returns p's capabilities.
func (s *Service) Capabilities(p auth.Principal) Capabilities {
	return Capabilities{
		ChangePassword:  !p.IsGuest,
		ThreePIDChanges: !p.IsGuest && !p.Suspended,
		GetLoginToken:   s.LoginTokensEnabled(p),
		Lock:            p.Admin,
		Suspend:         p.Admin,
	}
}

// JSON is the "capabilities" object of the response: the flags above, and
// profile changes (outside Myelin's slice) advertised as disabled.
// m.account_moderation is omitted unless the caller may lock or suspend,
// as the spec asks.
func (c Capabilities) JSON() map[string]any {
	enabled := func(b bool) map[string]any { return map[string]any{"enabled": b} }
	m := map[string]any{
		"m.change_password": enabled(c.ChangePassword),
		"m.3pid_changes":    enabled(c.ThreePIDChanges),
		"m.get_login_token": enabled(c.GetLoginToken),
		"m.set_displayname": enabled(false),
		"m.set_avatar_url":  enabled(false),
		"m.profile_fields":  enabled(false),
	}
	if c.Lock || c.Suspend {
		m["m.account_moderation"] = map[string]any{"lock": c.Lock, "suspend": c.Suspend}
	}
	return m
}
