package csapi

import (
	"context"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// Adding or binding a 3PID needs a session validated by email or SMS
// (requestToken), which Myelin never issues: it sends neither and has no
// identity server. An admin binds 3PIDs with `myelin user threepid add`.
func noValidatedThreepid() error {
	return matrixerr.New(http.StatusBadRequest, "M_THREEPID_AUTH_FAILED",
		"No validated 3PID session: this server does not verify 3PIDs (an administrator binds them)")
}

func (s *Server) Post3PIDs(ctx context.Context, _ clientapi.Post3PIDsRequestObject) (clientapi.Post3PIDsResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return nil, noValidatedThreepid()
}

func (s *Server) Add3PID(ctx context.Context, _ clientapi.Add3PIDRequestObject) (clientapi.Add3PIDResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return nil, noValidatedThreepid()
}

func (s *Server) Bind3PID(ctx context.Context, _ clientapi.Bind3PIDRequestObject) (clientapi.Bind3PIDResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return nil, matrixerr.New(http.StatusBadRequest, "M_THREEPID_AUTH_FAILED",
		"No validated 3PID session: this server talks to no identity server")
}

// Unbind3pidFromAccount removes a 3PID from an identity server only; Myelin
// uses none, which the spec's answer "no-support" says.
func (s *Server) Unbind3pidFromAccount(ctx context.Context, _ clientapi.Unbind3pidFromAccountRequestObject) (clientapi.Unbind3pidFromAccountResponseObject, error) {
	if _, err := auth.MustFromContext(ctx); err != nil {
		return nil, err
	}
	return clientapi.Unbind3pidFromAccount200JSONResponse{IdServerUnbindResult: "no-support"}, nil
}

func (s *Server) RequestTokenTo3PIDEmail(context.Context, clientapi.RequestTokenTo3PIDEmailRequestObject) (clientapi.RequestTokenTo3PIDEmailResponseObject, error) {
	return nil, threepidNotConfigured("Adding an email address")
}

func (s *Server) RequestTokenTo3PIDMSISDN(context.Context, clientapi.RequestTokenTo3PIDMSISDNRequestObject) (clientapi.RequestTokenTo3PIDMSISDNResponseObject, error) {
	return nil, threepidNotConfigured("Adding a phone number")
}
