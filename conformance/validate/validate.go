// Package validate checks HTTP responses against the embedded OpenAPI
// documents of both APIs. It is test machinery: impl/testenv installs
// Middleware on every test server, so each response sent during `make
// test` is checked and a violation fails the test that caused it; the
// conformance suite uses Check on the responses of its example replays.
// The production server never imports this package.
//
// Rules, beyond the schema of the matched operation:
//   - A status the operation does not declare (401 M_UNKNOWN_TOKEN, 429,
//     413, 500 …) must carry a Matrix error: a JSON object with string
//     errcode and error.
//   - Every error status (>= 400) carries errcode and error, declared or
//     not, except a user-interactive auth challenge (401 with flows);
//     matrix-nio rejects error bodies that lack either key.
//   - A UIA challenge carries flows, params and session, and errcode only
//     together with error (matrix-nio fails without params); it may answer
//     an operation whose description says it uses user-interactive auth
//     even if the operation declares no 401.
//   - Unknown paths inside the API namespaces answer Matrix errors.
package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/gen/clientapi/fullspec"
	fedfullspec "github.com/myelin-hs/myelin/gen/fedapi/fullspec"
)

// Validator checks responses against a set of OpenAPI documents.
type Validator struct {
	apis []api
}

type api struct {
	router routers.Router
	// owns reports whether a request path belongs to this API's namespace.
	owns func(path string) bool
}

// New returns a Validator for Myelin's two embedded documents.
func New() (*Validator, error) {
	cs, err := fullspec.GetSpec()
	if err != nil {
		return nil, err
	}
	fed, err := fedfullspec.GetSpec()
	if err != nil {
		return nil, err
	}
	v := &Validator{}
	for _, a := range []struct {
		doc  *openapi3.T
		owns func(string) bool
	}{
		{cs, func(p string) bool {
			// The UIA fallback pages under …/auth/ are HTML, outside the spec.
			return (strings.HasPrefix(p, "/_matrix/client/") && !strings.HasPrefix(p, "/_matrix/client/v3/auth/")) ||
				p == "/.well-known/matrix/client"
		}},
		{fed, func(p string) bool {
			return strings.HasPrefix(p, "/_matrix/federation/") || strings.HasPrefix(p, "/_matrix/key/")
		}},
	} {
		r, err := gorillamux.NewRouter(a.doc)
		if err != nil {
			return nil, err
		}
		v.apis = append(v.apis, api{router: r, owns: a.owns})
	}
	return v, nil
}

// route finds the operation of the documents that serves req, or nil.
func (v *Validator) route(req *http.Request) (*routers.Route, map[string]string) {
	for _, a := range v.apis {
		if !a.owns(req.URL.Path) {
			continue
		}
		route, params, err := a.router.FindRoute(req)
		if err == nil {
			return route, params
		}
	}
	return nil, nil
}

func (v *Validator) inNamespace(path string) bool {
	for _, a := range v.apis {
		if a.owns(path) {
			return true
		}
	}
	return false
}

// Check validates one response to req (whose path is already in its v3
// form). It returns nil when the response conforms, else an error that
// names the request and says what is wrong.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	if err := v.check(req, status, header, body); err != nil {
		return fmt.Errorf("%s %s → %d: %w; body: %.300s", req.Method, req.URL.Path, status, err, body)
	}
	return nil
}

func (v *Validator) check(req *http.Request, status int, header http.Header, body []byte) error {
	if req.Method == http.MethodHead || req.Method == http.MethodOptions {
		return nil // HEAD has no body; OPTIONS are CORS preflights, not spec operations
	}
	route, params := v.route(req)
	if route == nil && otherProtocol(req.URL.Path) {
		return nil // OAuth 2.0 / OpenID Connect endpoints answer per their RFCs
	}
	if route == nil {
		if !v.inNamespace(req.URL.Path) && !isJSON(header) {
			return nil // fallback pages and other routes outside the documents
		}
		if status < 400 {
			return fmt.Errorf("no operation of the spec serves this request, yet it succeeded")
		}
		return matrixError(status, header, body)
	}
	op := route.Operation
	declared := op.Responses.Status(status) != nil || op.Responses.Default() != nil
	if !declared {
		if status < 400 {
			return fmt.Errorf("status %d is not declared for %s", status, op.OperationID)
		}
		if status == http.StatusUnauthorized && strings.Contains(op.Description, "User-Interactive Authentication") {
			// The operation says it uses user-interactive auth, yet
			// declares no 401 (POST /keys/device_signing/upload in
			// v1.19): its challenge is checked as a declared one's.
			return errorShape(status, header, body)
		}
		return matrixError(status, header, body)
	}
	if status == http.StatusUnauthorized && op.OperationID == "Register" && invalidAuth(header, body) {
		// POST /register with m.login.application_service and no valid
		// as_token: the application service API answers as for invalid
		// auth (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN), while the
		// operation declares its 401 as the UIA challenge.
		return matrixError(status, header, body)
	}
	if status >= 400 {
		if err := errorShape(status, header, body); err != nil {
			return err
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return errors.New(describe(err))
	}
	return nil
}

// describe flattens kin-openapi's nested errors into one line that names
// the offending field.
func describe(err error) string {
	var re *openapi3filter.ResponseError
	if errors.As(err, &re) {
		var se *openapi3.SchemaError
		if errors.As(re.Err, &se) {
			// allOf/oneOf failures wrap the real one in Origin; their
			// pointers are relative to the outer value.
			path := se.JSONPointer()
			for {
				var inner *openapi3.SchemaError
				if se.Origin == nil || !errors.As(se.Origin, &inner) {
					break
				}
				se = inner
				path = append(path, se.JSONPointer()...)
			}
			return fmt.Sprintf("%s: field %q: %s", re.Reason, strings.Join(path, "."), se.Reason)
		}
		if re.Err != nil {
			return re.Reason + ": " + re.Err.Error()
		}
		return re.Reason
	}
	return err.Error()
}

// otherProtocol reports whether path is an endpoint of a protocol other
// than Matrix's, whose answers (RFC 6749 errors, RFC 7591 registrations,
// OpenID discovery) the Matrix spec does not describe: the OAuth 2.0
// server's endpoints (impl/oauth), and MSC2965's unstable discovery.
func otherProtocol(path string) bool {
	return strings.HasPrefix(path, "/_myelin/oauth2/") || path == "/.well-known/openid-configuration" ||
		strings.HasPrefix(path, "/_matrix/client/unstable/org.matrix.msc2965/")
}

func isJSON(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/json"
}

func decodeObject(header http.Header, body []byte) (map[string]any, error) {
	if !isJSON(header) {
		return nil, fmt.Errorf("Content-Type %q is not application/json", header.Get("Content-Type"))
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("body is not a JSON object")
	}
	return obj, nil
}

// errorShape checks an error status of a declared response: a Matrix
// error, or a well-formed user-interactive auth challenge.
func errorShape(status int, header http.Header, body []byte) error {
	obj, err := decodeObject(header, body)
	if err != nil {
		return err
	}
	if _, uia := obj["flows"]; uia && status == http.StatusUnauthorized {
		for _, k := range []string{"flows", "params", "session"} {
			if _, ok := obj[k]; !ok {
				return fmt.Errorf("user-interactive auth challenge without %q", k)
			}
		}
		if _, ok := obj["errcode"]; ok {
			return errorFields(obj)
		}
		return nil
	}
	return errorFields(obj)
}

// invalidAuth reports whether body is the error of a missing or unknown
// access token.
func invalidAuth(header http.Header, body []byte) bool {
	obj, err := decodeObject(header, body)
	if err != nil {
		return false
	}
	code, _ := obj["errcode"].(string)
	return code == "M_MISSING_TOKEN" || code == "M_UNKNOWN_TOKEN"
}

// matrixError checks that an undeclared response is a Matrix error.
func matrixError(status int, header http.Header, body []byte) error {
	if status < 400 {
		return fmt.Errorf("undeclared status %d", status)
	}
	obj, err := decodeObject(header, body)
	if err != nil {
		return fmt.Errorf("undeclared status is not a Matrix error: %w", err)
	}
	if err := errorFields(obj); err != nil {
		return fmt.Errorf("undeclared status is not a Matrix error: %w", err)
	}
	if ra, ok := obj["retry_after_ms"]; ok {
		if n, ok := ra.(float64); !ok || n < 0 || n != float64(int64(n)) {
			return fmt.Errorf("retry_after_ms is not a non-negative integer: %v", ra)
		}
	}
	return nil
}

func errorFields(obj map[string]any) error {
	code, ok := obj["errcode"].(string)
	if !ok || code == "" {
		return fmt.Errorf("errcode is missing or not a string")
	}
	if _, ok := obj["error"].(string); !ok {
		return fmt.Errorf("error is missing or not a string")
	}
	return nil
}

// Middleware returns Echo pre-routing middleware that buffers every
// response, passes it on unchanged, and calls report with the violation
// when it does not conform. Install it with Echo.Pre after the server's
// own Pre middleware, so paths are already rewritten from r0 to v3.
func (v *Validator) Middleware(report func(error)) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			res := c.Response()
			rec := &recorder{header: res.Header()}
			orig := res.Writer
			res.Writer = rec
			err := next(c)
			if err != nil {
				c.Error(err) // render it now, into the recorder
			}
			res.Writer = orig
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			if verr := v.Check(c.Request(), status, rec.header, rec.body.Bytes()); verr != nil {
				report(verr)
			}
			orig.WriteHeader(status)
			_, werr := io.Copy(orig, &rec.body)
			return werr
		}
	}
}

// recorder buffers a response; headers are written through to the real
// response's header map, so Echo's bookkeeping stays consistent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}
