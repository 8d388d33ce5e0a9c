package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// specRoute is what the spec says about one operation.
type specRoute struct {
	scheme string // security scheme the operation requires ("" if none)
	// optional: the spec also allows no credentials (`security: [{}, …]`,
	// e.g. /versions and, since v1.11, /account/password): the scheme's
	// check runs only when the request carries credentials.
	optional bool
	// route is the operation under a copy of its document labelled
	// OpenAPI 3.0 (see as30); nil: no parameters and no body, nothing to
	// validate.
	route *routers.Route
}

// as30 returns a shallow copy of doc that claims OpenAPI 3.0.3. For a 3.1
// document kin-openapi validates every value through a JSON Schema
// 2020-12 validator that it marshals and compiles anew for each value of
// each request (kin-openapi v0.152/v0.153 keep no compiled schema): ~30 KB
// of garbage and most of the CPU of a /sync long poll for its parameters,
// and about 250 µs of CPU for the body of each PUT /sendToDevice. The
// request-validation document (gen/<api>/reqspec) uses only keywords that
// the built-in validator checks as JSON Schema 2020-12 does (a type, type
// lists with "null", properties, required, additionalProperties, allOf,
// oneOf, items, enum, formats, patterns, min/maxProperties): the tests
// hold it to that list and compare both validators' verdicts on the
// spec's request examples and their mutations. Parameters and bodies are
// both validated under this copy.
func as30(doc *openapi3.T) *openapi3.T {
	cp := *doc
	cp.OpenAPI = "3.0.3"
	return &cp
}

// schemeName maps the spec's security schemes to the checks the server
// registers: the spec names the two ways of passing an access token
// (accessTokenQuery, accessTokenBearer) as two schemes, and one check
// reads both.
func schemeName(name string) string {
	switch name {
	case "accessTokenQuery", "accessTokenBearer":
		return "accessToken"
	case "appserviceAccessTokenQuery", "appserviceAccessTokenBearer":
		return "appserviceAccessToken"
	}
	return name
}

// hasCredentials tells whether a request carries an access token or a
// federation signature.
func hasCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token")
}

// specIndex finds an operation of the embedded specs from the route Echo
// matched (its path pattern and the method), so each request costs two
// map lookups instead of a second routing pass over the spec's paths.
type specIndex map[string]map[string]*specRoute

var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)

func newSpecIndex(docs ...*openapi3.T) specIndex {
	idx := specIndex{}
	for _, doc := range docs {
		doc30 := as30(doc)
		for path, item := range doc.Paths.Map() {
			echoPath := pathParamRE.ReplaceAllString(path, ":$1")
			for method, op := range item.Operations() {
				sr := &specRoute{}
				reqs := doc.Security
				if op.Security != nil {
					reqs = *op.Security
				}
				for _, req := range reqs {
					if len(req) == 0 {
						sr.optional = true
					}
					for name := range req {
						sr.scheme = schemeName(name)
					}
				}
				if len(op.Parameters) > 0 || len(item.Parameters) > 0 || op.RequestBody != nil {
					sr.route = &routers.Route{Spec: doc30, Path: path, PathItem: item, Method: method, Operation: op}
				}
				if idx[echoPath] == nil {
					idx[echoPath] = map[string]*specRoute{}
				}
				idx[echoPath][method] = sr
			}
		}
	}
	return idx
}

// checkSecurity refuses to serve an operation whose security scheme has no
// check: its requests would reach the handler unauthenticated.
func (idx specIndex) checkSecurity(security map[string]SecurityFunc) error {
	for path, byMethod := range idx {
		for method, sr := range byMethod {
			if sr.scheme != "" && security[sr.scheme] == nil {
				return fmt.Errorf("%s %s: no check for security scheme %q", method, path, sr.scheme)
			}
		}
	}
	return nil
}

// validateOptions: authentication is done by the security checks, so the
// filter's own security check is a no-op.
var validateOptions = &openapi3filter.Options{
	AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	MultiError:         false,
}

// middleware runs, for each operation of the specs, the security check its
// scheme requires (security maps a scheme to its check) and then validates
// the request against the spec, answering violations with Matrix errors:
// unparseable JSON → M_NOT_JSON, schema violation → M_BAD_JSON naming the
// field, missing required parameter → M_MISSING_PARAM, other parameter
// problems → M_INVALID_PARAM. Requests Echo routed to no operation of the
// specs (unknown paths, wrong methods, routes outside the specs) pass
// through: Echo answers 404/405, which the error handler renders as
// M_UNRECOGNIZED.
func (idx specIndex) middleware(security map[string]SecurityFunc) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			sr := idx[c.Path()][c.Request().Method]
			if sr == nil {
				return next(c)
			}
			if f := security[sr.scheme]; f != nil && (!sr.optional || hasCredentials(c.Request())) {
				if err := f(c); err != nil {
					return err
				}
			}
			if sr.route != nil {
				if err := validateRequest(c, sr); err != nil {
					return validationError(err)
				}
			}
			return next(c)
		}
	}
}

// paramOptions validate the parameters alone (the body separately).
var paramOptions = &openapi3filter.Options{
	AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	ExcludeRequestBody: true,
}

func validateRequest(c echo.Context, sr *specRoute) error {
	r := c.Request()
	var params map[string]string
	if names := c.ParamNames(); len(names) > 0 {
		params = make(map[string]string, len(names))
		for i, v := range c.ParamValues()[:len(names)] {
			// Echo matches the escaped path when there is one; the
			// spec's schemas apply to the decoded value.
			if r.URL.RawPath != "" {
				if u, err := url.PathUnescape(v); err == nil {
					v = u
				}
			}
			params[names[i]] = v
		}
	}
	if err := openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: sr.route, Options: paramOptions,
	}); err != nil {
		return err
	}
	body := sr.route.Operation.RequestBody
	if body == nil || body.Value == nil {
		return nil
	}
	return openapi3filter.ValidateRequestBody(r.Context(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: sr.route, Options: validateOptions,
	}, body.Value)
}

func validationError(err error) *matrixerr.Error {
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		return matrixerr.Unrecognized(http.StatusMethodNotAllowed, "Method not allowed for this endpoint")
	}
	if errors.Is(err, routers.ErrPathNotFound) {
		return matrixerr.Unrecognized(http.StatusNotFound, "Unrecognized request")
	}
	// Only a MultiError at the top lists separate problems; one inside a
	// schema error (a oneOf's alternatives) belongs to that field.
	if me, ok := err.(openapi3.MultiError); ok && len(me) > 0 {
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
