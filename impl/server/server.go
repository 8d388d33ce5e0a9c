// Package server assembles the HTTP side of Myelin: one Echo instance that
// serves the generated client-server and server-server interfaces, with
// request validation from the embedded specs, spec-driven authentication,
// Matrix errors for every failure, CORS, and logging.
package server

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/gen/clientapi/reqspec"
	"github.com/myelin-hs/myelin/gen/fedapi"
	fedreqspec "github.com/myelin-hs/myelin/gen/fedapi/reqspec"
	"github.com/myelin-hs/myelin/impl/config"
)

// SecurityFunc authenticates a request for one security scheme of the spec
// ("accessToken" for clients, "signedRequest" for servers). It may replace
// the request's context (to carry the authenticated principal) and returns
// a Matrix error to refuse the request.
type SecurityFunc func(c echo.Context) error

// Deps are what the HTTP layer needs.
type Deps struct {
	Config     *config.Config
	Log        *slog.Logger
	Client     clientapi.StrictServerInterface
	Federation fedapi.StrictServerInterface
	// Security maps a security scheme name of the spec to its check.
	Security map[string]SecurityFunc
	// Routes registers routes the specs do not describe (fallback pages).
	// Optional.
	Routes func(e *echo.Echo)
	// Observe sees every request with its final answer (metrics).
	// Optional.
	Observe echo.MiddlewareFunc
}

// New builds the Echo instance.
func New(d Deps) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(d.Log)
	ipx, err := ipExtractor(d.Config)
	if err != nil {
		return nil, err
	}
	e.IPExtractor = ipx

	clientDoc, err := reqspec.GetSpec()
	if err != nil {
		return nil, err
	}
	fedDoc, err := fedreqspec.GetSpec()
	if err != nil {
		return nil, err
	}

	e.Pre(rewriteAliases)
	if d.Observe != nil {
		// Outermost: it sees every answer as sent, error answers (written
		// by requestLog) and panics (answered 500 by recoverer) included.
		e.Use(d.Observe)
	}
	e.Use(recoverer(d.Log))
	e.Use(clientIP)
	e.Use(requestLog(d.Log))
	// CORS as the client-server spec asks: any origin, the methods and
	// headers Matrix clients use; preflights are answered here.
	e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins: []string{"*"},
		AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions},
		AllowHeaders: []string{"X-Requested-With", "Content-Type", "Authorization"},
	}))
	spec := newSpecIndex(clientDoc, fedDoc)
	if err := spec.checkSecurity(d.Security); err != nil {
		return nil, err
	}
	e.Use(bodyCheck(d.Config.MaxBodyBytes, spec))
	e.Use(spec.middleware(d.Security))

	clientapi.RegisterHandlers(e, clientapi.NewStrictHandler(d.Client, nil))
	fedapi.RegisterHandlers(e, fedapi.NewStrictHandler(d.Federation, nil))
	if d.Routes != nil {
		d.Routes(e)
	}
	return e, nil
}

func ipExtractor(cfg *config.Config) (echo.IPExtractor, error) {
	prefixes, err := cfg.TrustedProxyPrefixes()
	if err != nil {
		return nil, err
	}
	if len(prefixes) == 0 {
		return echo.ExtractIPDirect(), nil
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range prefixes {
		_, n, err := net.ParseCIDR(p.String())
		if err != nil {
			return nil, err
		}
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...), nil
}
