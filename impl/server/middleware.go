package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// rewriteAliases serves paths that older peers use under the spec's
// current ones:
//   - the r0 API under the v3 handlers: matrix-nio and other older clients
//     call /_matrix/client/r0/…, Element calls …/v3/…; the endpoints
//     Myelin serves are identical in both;
//   - /_matrix/key/v2/server/{keyId}, which spec v1.6 removed, under
//     /_matrix/key/v2/server: old servers still ask for it, and the answer
//     (all keys, whatever keyId names) is the same.
func rewriteAliases(next echo.HandlerFunc) echo.HandlerFunc {
	const r0, v3 = "/_matrix/client/r0/", "/_matrix/client/v3/"
	const keyServer = "/_matrix/key/v2/server"
	return func(c echo.Context) error {
		r := c.Request()
		switch {
		case strings.HasPrefix(r.URL.Path, r0):
			r.URL.Path = v3 + r.URL.Path[len(r0):]
			if r.URL.RawPath != "" {
				r.URL.RawPath = v3 + strings.TrimPrefix(r.URL.RawPath, r0)
			}
		case strings.HasPrefix(r.URL.Path, keyServer+"/"):
			r.URL.Path, r.URL.RawPath = keyServer, ""
		}
		return next(c)
	}
}

// clientIP puts the client's address into the request context, where the
// strict handlers (which see no echo.Context) find it with auth.ClientIP.
func clientIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(auth.WithClientIP(r.Context(), c.RealIP())))
		return next(c)
	}
}

// recoverer turns a panic into 500 M_UNKNOWN, logging the stack but never
// sending it.
func recoverer(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error("panic serving request", "method", c.Request().Method,
						"path", c.Request().URL.Path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = matrixerr.Unknown("Internal server error")
				}
			}()
			return next(c)
		}
	}
}

// requestLog writes one line per request. Only the path is logged, never
// the query string (it may carry ?access_token=) or any body.
func requestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			lvl := slog.LevelInfo
			if status >= 500 {
				lvl = slog.LevelError
			}
			log.LogAttrs(c.Request().Context(), lvl, "request",
				slog.String("method", c.Request().Method),
				slog.String("path", c.Request().URL.Path),
				slog.Int("status", status),
				slog.Duration("took", time.Since(start)),
				slog.String("ip", auth.ClientIP(c.Request().Context())))
			return nil
		}
	}
}

// bodyCheck enforces the body size limit (413 M_TOO_LARGE), rejects bodies
// that are not valid UTF-8 (400 M_NOT_JSON: encoding/json would silently
// replace bad bytes) and, on the spec's JSON endpoints, treats a body
// without a JSON Content-Type as JSON, as Synapse does (Echo's binder would
// otherwise ignore it, and `curl -d` sends a form type). Routes outside the
// spec (the HTML fallback pages) keep their form posts.
func bodyCheck(limit int64, spec specIndex) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
				return next(c)
			}
			if r.ContentLength > limit {
				return matrixerr.TooLarge(fmt.Sprintf("Request body larger than %d bytes", limit))
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			r.Body.Close()
			if err != nil {
				return matrixerr.NotJSON("Could not read request body")
			}
			if int64(len(body)) > limit {
				return matrixerr.TooLarge(fmt.Sprintf("Request body larger than %d bytes", limit))
			}
			if len(bytes.TrimSpace(body)) > 0 {
				if !utf8.Valid(body) {
					return matrixerr.NotJSON("Content not JSON: invalid UTF-8")
				}
				mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
				if mt != "application/json" && spec[c.Path()] != nil {
					r.Header.Set("Content-Type", "application/json")
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			c.SetRequest(r.WithContext(context.WithValue(r.Context(), rawBodyKey{}, body)))
			return next(c)
		}
	}
}

type rawBodyKey struct{}

// RawBody returns the request body as received (nil if there was none). It
// is what X-Matrix signatures cover, and what handlers of signed JSON (device
// keys) need: the generated models drop members they do not declare, which
// would break the signatures.
func RawBody(ctx context.Context) []byte {
	b, _ := ctx.Value(rawBodyKey{}).([]byte)
	return b
}
