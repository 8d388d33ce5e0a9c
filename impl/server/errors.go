package server

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// errorHandler renders every error as a Matrix error. Domain errors are
// *matrixerr.Error; Echo's own errors (routing, body limit) are mapped; any
// other error is logged and answered with 500 M_UNKNOWN without internals.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		me := toMatrix(err)
		if me.Status >= 500 {
			log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		}
		if c.Request().Method == http.MethodHead {
			c.Response().WriteHeader(me.Status)
			return
		}
		_ = me.Write(c.Response())
	}
}

func toMatrix(err error) *matrixerr.Error {
	if me, ok := matrixerr.As(err); ok {
		return me
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return matrixerr.Unrecognized(http.StatusNotFound, "Unrecognized request")
		case http.StatusMethodNotAllowed:
			return matrixerr.Unrecognized(http.StatusMethodNotAllowed, "Method not allowed for this endpoint")
		case http.StatusRequestEntityTooLarge:
			return matrixerr.TooLarge("Request body too large")
		case http.StatusUnsupportedMediaType, http.StatusBadRequest:
			return matrixerr.NotJSON("Content not JSON")
		case http.StatusUnauthorized:
			return matrixerr.MissingToken()
		}
		if he.Code >= 400 && he.Code < 500 {
			return matrixerr.New(he.Code, "M_UNKNOWN", http.StatusText(he.Code))
		}
	}
	return matrixerr.Unknown("Internal server error")
}
