// Package matrixerr defines the Matrix error returned by every layer of
// Myelin. Domain services return *Error values; the HTTP layer renders them
// as {"errcode": "M_…", "error": "…"} with the right status, so no handler
// needs to bend the generated response types (the spec declares few error
// responses, and no 401 M_UNKNOWN_TOKEN at all).
package matrixerr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Error is a Matrix error response. An Error with an empty Code renders
// only Extra: that is how a user-interactive auth challenge (401 with flows,
// params, session, completed and no errcode) travels.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, adds retry_after_ms and a Retry-After header.
	RetryAfter time.Duration
	// Extra holds additional top-level keys (e.g. the UIA flows of a failed
	// stage, or soft_logout).
	Extra map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Body returns the JSON object sent to the client.
func (e *Error) Body() map[string]any {
	b := make(map[string]any, len(e.Extra)+3)
	for k, v := range e.Extra {
		b[k] = v
	}
	if e.Code != "" { // a bare UIA challenge carries no errcode
		b["errcode"] = e.Code
		b["error"] = e.Message
	}
	if e.RetryAfter > 0 {
		b["retry_after_ms"] = e.RetryAfter.Milliseconds()
	}
	return b
}

// Write renders e on w.
func (e *Error) Write(w http.ResponseWriter) error {
	body, err := json.Marshal(e.Body())
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(e.Status)
	_, err = w.Write(body)
	return err
}

// As reports whether err is (or wraps) a Matrix error.
func As(err error) (*Error, bool) {
	var me *Error
	if errors.As(err, &me) {
		return me, true
	}
	return nil, false
}

// New returns an error with the given status, code and message.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

func Forbidden(msg string) *Error    { return New(http.StatusForbidden, "M_FORBIDDEN", msg) }
func NotFound(msg string) *Error     { return New(http.StatusNotFound, "M_NOT_FOUND", msg) }
func BadJSON(msg string) *Error      { return New(http.StatusBadRequest, "M_BAD_JSON", msg) }
func NotJSON(msg string) *Error      { return New(http.StatusBadRequest, "M_NOT_JSON", msg) }
func MissingParam(msg string) *Error { return New(http.StatusBadRequest, "M_MISSING_PARAM", msg) }
func InvalidParam(msg string) *Error { return New(http.StatusBadRequest, "M_INVALID_PARAM", msg) }
func Unrecognized(status int, msg string) *Error {
	return New(status, "M_UNRECOGNIZED", msg)
}
func MissingToken() *Error {
	return New(http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
}
func UnknownToken() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN_TOKEN",
		Message: "Unrecognised access token", Extra: map[string]any{"soft_logout": false}}
}
func TooLarge(msg string) *Error { return New(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", msg) }
func Unknown(msg string) *Error  { return New(http.StatusInternalServerError, "M_UNKNOWN", msg) }
func Unauthorized(msg string) *Error {
	return New(http.StatusUnauthorized, "M_UNAUTHORIZED", msg)
}
func LimitExceeded(retry time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
		Message: "Too many requests", RetryAfter: retry}
}

// Unsupported answers operations Myelin deliberately does not provide.
func Unsupported(msg string) *Error {
	return New(http.StatusNotImplemented, "M_UNRECOGNIZED", msg)
}
