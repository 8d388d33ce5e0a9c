// Package accountpage serves the account page at /_myelin/account/, the
// account management URL of the spec (v1.18): a signed-in user's devices
// (display name, ID, last seen) and browser sessions; renaming and signing
// out a device (deleted as by DELETE /devices/{id}: tokens revoked, a
// device-list update to every server that needs it); deactivating the
// account (password re-entered and confirmed; as POST /account/deactivate);
// and approving a cross-signing reset (the next replacement of the user's
// cross-signing keys needs no user-interactive auth, once, for
// uia.ApprovalTTL).
//
// The spec's query parameters open the right view: ?action=
// org.matrix.devices_list | org.matrix.device_view | org.matrix.device_delete
// | org.matrix.account_deactivate | org.matrix.cross_signing_reset, with
// &device_id= for the device actions. Every form posts a CSRF token
// (impl/web checks it), and every POST answers with a redirect to a page
// (no form is re-sent by reloading).
package accountpage

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
	"github.com/myelin-hs/myelin/impl/web"
)

// Deactivator deactivates an account after checking its password (the
// accounts service).
type Deactivator interface {
	DeactivateWithPassword(ctx context.Context, userID, password, ip string, erase bool) error
}

// Handler serves the account page.
type Handler struct {
	Devices  *devices.Core
	Accounts Deactivator
	// UIA keeps approvals; its OAuth (read at each request) marks the
	// devices that are OAuth sessions.
	UIA      *uia.Engine
	sessions *web.Sessions
}

// Mount registers the routes (a mount function of web.Site.Mount).
func (h *Handler) Mount(g *echo.Group, s *web.Site) {
	h.sessions = s.Sessions
	need := s.Sessions.RequireSignIn
	g.GET("/account/", h.show, need)
	g.GET("/account", func(c echo.Context) error {
		return c.Redirect(http.StatusMovedPermanently, web.AccountPath+queryOf(c))
	})
	g.POST("/account/devices/rename", h.rename, need)
	g.POST("/account/devices/delete", h.deleteDevice, need)
	g.POST("/account/sessions/end", h.endSession, need)
	g.POST("/account/deactivate", h.deactivate, need)
	g.POST("/account/cross-signing-reset", h.approveReset, need)
}

func queryOf(c echo.Context) string {
	if q := c.Request().URL.RawQuery; q != "" {
		return "?" + q
	}
	return ""
}

// notices are the messages a redirect after a POST may ask for (by key,
// so no text of a URL is ever shown).
var notices = map[string]string{
	"renamed":     "The device was renamed.",
	"signed-out":  "The device was signed out.",
	"session-end": "The browser session was signed out.",
	"approved":    "Cross-signing reset approved. Go back to your app to finish resetting your identity.",
}

// device is one row of the device list.
type device struct {
	ID, Name   string
	LastSeen   string
	LastSeenIP string
	Created    string
	OAuth      bool
	HasName    bool
}

type browserSession struct {
	Hash, IP, UserAgent, Created, Expires string
	Current                               bool
}

type view struct {
	Action   string
	Notice   string
	Error    string
	Devices  []device
	Sessions []browserSession
	Device   *device
	// DeviceMissing: a device action named a device the user does not have.
	DeviceMissing string
	// ResetUntil: an approved cross-signing reset waits until then.
	ResetUntil string
}

func fmtTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2 Jan 2006, 15:04 UTC")
}

func toDevice(d storage.Device) device {
	out := device{ID: d.DeviceID, Created: fmtTime(d.CreatedTS)}
	if d.DisplayName != nil && *d.DisplayName != "" {
		out.Name, out.HasName = *d.DisplayName, true
	}
	if d.LastSeenTS != nil {
		out.LastSeen = fmtTime(*d.LastSeenTS)
	}
	if d.LastSeenIP != nil {
		out.LastSeenIP = *d.LastSeenIP
	}
	return out
}

func (h *Handler) isOAuth(ctx context.Context, userID, deviceID string) bool {
	if h.UIA.OAuth == nil {
		return false
	}
	ok, err := h.UIA.OAuth.IsOAuthSession(ctx, userID, deviceID)
	return err == nil && ok
}

// show renders the view the action asks for.
func (h *Handler) show(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	ctx := c.Request().Context()
	v := view{Action: c.QueryParam("action"), Notice: notices[c.QueryParam("notice")]}
	deviceID := c.QueryParam("device_id")
	title := "Your account"
	switch v.Action {
	case uia.ActionDeviceView, uia.ActionDeviceDelete:
		d, err := h.Devices.Get(ctx, uid, deviceID)
		if me, ok := matrixerr.As(err); ok && me.Status == http.StatusNotFound {
			v.DeviceMissing = deviceID
			v.Action = uia.ActionDevicesList
			break
		}
		if err != nil {
			return err
		}
		dv := toDevice(d)
		dv.OAuth = h.isOAuth(ctx, uid, d.DeviceID)
		v.Device = &dv
		title = "Device " + d.DeviceID
		if v.Action == uia.ActionDeviceDelete {
			title = "Sign out " + d.DeviceID
		}
		return web.Render(c, http.StatusOK, web.Page{Title: title}, func(p web.Page) templ.Component { return devicePage(p, v) })
	case uia.ActionAccountDeactivate:
		return renderDeactivate(c, http.StatusOK, v)
	case uia.ActionCrossSigningReset:
		until, ok, err := h.UIA.Approved(ctx, uid, uia.OpCrossSigningUpload())
		if err != nil {
			return err
		}
		if ok {
			v.ResetUntil = until.UTC().Format("15:04 UTC")
		}
		return web.Render(c, http.StatusOK, web.Page{Title: "Reset cross-signing"}, func(p web.Page) templ.Component { return resetPage(p, v) })
	default:
		v.Action = uia.ActionDevicesList
	}
	ds, err := h.Devices.List(ctx, uid)
	if err != nil {
		return err
	}
	for _, d := range ds {
		// List leaves out the creation time; the page does not need it.
		dv := toDevice(d)
		dv.Created = ""
		dv.OAuth = h.isOAuth(ctx, uid, d.DeviceID)
		v.Devices = append(v.Devices, dv)
	}
	ss, err := h.sessions.List(ctx, uid)
	if err != nil {
		return err
	}
	cur := h.sessions.CurrentHash(c)
	for _, s := range ss {
		v.Sessions = append(v.Sessions, browserSession{Hash: s.SessionHash, IP: s.IP, UserAgent: s.UserAgent,
			Created: fmtTime(s.CreatedTS), Expires: fmtTime(s.ExpiresTS), Current: s.SessionHash == cur})
	}
	return web.Render(c, http.StatusOK, web.Page{Title: title}, func(p web.Page) templ.Component { return accountPage(p, v) })
}

func renderDeactivate(c echo.Context, status int, v view) error {
	return web.Render(c, status, web.Page{Title: "Deactivate account"}, func(p web.Page) templ.Component { return deactivatePage(p, v) })
}

func redirect(c echo.Context, q url.Values) error {
	return c.Redirect(http.StatusSeeOther, web.AccountPath+"?"+q.Encode())
}

func (h *Handler) rename(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	id, name := c.FormValue("device_id"), c.FormValue("display_name")
	if err := h.Devices.Rename(c.Request().Context(), uid, id, &name); err != nil {
		return err
	}
	return redirect(c, url.Values{"action": {uia.ActionDeviceView}, "device_id": {id}, "notice": {"renamed"}})
}

// deleteDevice signs a device out as DELETE /devices/{id} does, and
// records an approval of that deletion, so that a client that was sent
// here by an m.oauth challenge completes its request on retry.
func (h *Handler) deleteDevice(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	ctx := c.Request().Context()
	id := c.FormValue("device_id")
	if _, err := h.Devices.Get(ctx, uid, id); err != nil {
		return err
	}
	if _, err := h.Devices.Delete(ctx, uid, []string{id}, nil); err != nil {
		return err
	}
	if err := h.UIA.Approve(ctx, uid, uia.OpDeleteDevice(id)); err != nil {
		return err
	}
	return redirect(c, url.Values{"action": {uia.ActionDevicesList}, "notice": {"signed-out"}})
}

func (h *Handler) endSession(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	hash := c.FormValue("session")
	if hash == h.sessions.CurrentHash(c) {
		if err := h.sessions.SignOut(c); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, web.SignInPath)
	}
	if err := h.sessions.End(c.Request().Context(), uid, hash); err != nil {
		return err
	}
	return redirect(c, url.Values{"action": {uia.ActionDevicesList}, "notice": {"session-end"}})
}

func (h *Handler) deactivate(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	v := view{Action: uia.ActionAccountDeactivate}
	if c.FormValue("confirm") != "yes" {
		v.Error = "Tick the box to confirm that you want to deactivate your account."
		return renderDeactivate(c, http.StatusBadRequest, v)
	}
	err := h.Accounts.DeactivateWithPassword(c.Request().Context(), uid, c.FormValue("password"), c.RealIP(), c.FormValue("erase") == "yes")
	if me, ok := matrixerr.As(err); ok && me.Status < 500 {
		v.Error = "Wrong password."
		status := http.StatusForbidden
		if me.Code == "M_LIMIT_EXCEEDED" {
			v.Error, status = "Too many attempts. Please wait a moment and try again.", http.StatusTooManyRequests
		}
		return renderDeactivate(c, status, v)
	}
	if err != nil {
		return err
	}
	// The sessions went with the account; clear this browser's cookie.
	if err := h.sessions.SignOut(c); err != nil {
		return err
	}
	return web.Render(c, http.StatusOK, web.Page{Title: "Account deactivated"}, func(p web.Page) templ.Component { return deactivatedPage(p, uid) })
}

func (h *Handler) approveReset(c echo.Context) error {
	uid, _ := h.sessions.Current(c)
	if err := h.UIA.Approve(c.Request().Context(), uid, uia.OpCrossSigningUpload()); err != nil {
		return err
	}
	return redirect(c, url.Values{"action": {uia.ActionCrossSigningReset}, "notice": {"approved"}})
}
