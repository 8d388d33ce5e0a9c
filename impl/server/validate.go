package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
	nethttpmiddleware "github.com/oapi-codegen/nethttp-middleware"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// validator returns Echo middleware that validates requests against the
// embedded OpenAPI document and answers violations with Matrix errors:
// unparseable JSON → M_NOT_JSON, schema violation → M_BAD_JSON naming the
// field, missing required parameter → M_MISSING_PARAM, other parameter
// problems → M_INVALID_PARAM, unknown path → 404 / wrong method → 405
// M_UNRECOGNIZED. Authentication is done by our own middleware, so the
// filter's security check is a no-op. Requests for which skip returns true
// (paths the document does not describe) pass through.
func validator(doc *openapi3.T, skip func(r *http.Request) bool) echo.MiddlewareFunc {
	opts := &nethttpmiddleware.Options{
		Options: openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         false,
		},
		DoNotValidateServers:  true,
		SilenceServersWarning: true,
		Skipper:               skip,
		ErrorHandlerWithOpts: func(_ context.Context, err error, w http.ResponseWriter, _ *http.Request, _ nethttpmiddleware.ErrorHandlerOpts) {
			_ = validationError(err).Write(w)
		},
	}
	return echo.WrapMiddleware(nethttpmiddleware.OapiRequestValidatorWithOptions(doc, opts))
}

func validationError(err error) *matrixerr.Error {
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		return matrixerr.Unrecognized(http.StatusMethodNotAllowed, "Method not allowed for this endpoint")
	}
	if errors.Is(err, routers.ErrPathNotFound) {
		return matrixerr.Unrecognized(http.StatusNotFound, "Unrecognized request")
	}
	var me openapi3.MultiError
	if errors.As(err, &me) && len(me) > 0 {
		return validationError(me[0])
	}
	var re *openapi3filter.RequestError
	if !errors.As(err, &re) {
		return matrixerr.BadJSON("Invalid request")
	}
	if re.Parameter != nil {
		name := re.Parameter.Name
		if errors.Is(re.Err, openapi3filter.ErrInvalidRequired) {
			return matrixerr.MissingParam(fmt.Sprintf("Missing %s parameter: %s", re.Parameter.In, name))
		}
		return matrixerr.InvalidParam(fmt.Sprintf("Invalid %s parameter %s: %s", re.Parameter.In, name, firstLine(reason(re.Err))))
	}
	if re.RequestBody != nil {
		if errors.Is(re.Err, openapi3filter.ErrInvalidRequired) || errors.Is(re.Err, openapi3filter.ErrInvalidEmptyValue) {
			return matrixerr.NotJSON("Request body required")
		}
		var pe *openapi3filter.ParseError
		if errors.As(re.Err, &pe) {
			return matrixerr.NotJSON("Content not JSON: " + firstLine(pe.Error()))
		}
		var se *openapi3.SchemaError
		if errors.As(re.Err, &se) {
			field := strings.Join(se.JSONPointer(), ".")
			if field == "" {
				return matrixerr.BadJSON("Invalid request body: " + se.Reason)
			}
			if se.SchemaField == "required" {
				return matrixerr.BadJSON(fmt.Sprintf("Missing field %q: %s", field, se.Reason))
			}
			return matrixerr.BadJSON(fmt.Sprintf("Invalid field %q: %s", field, se.Reason))
		}
		return matrixerr.NotJSON("Content not JSON: " + firstLine(reason(re.Err)))
	}
	return matrixerr.BadJSON(firstLine(re.Error()))
}

func reason(err error) string {
	if err == nil {
		return "invalid"
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		return se.Reason
	}
	return err.Error()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
