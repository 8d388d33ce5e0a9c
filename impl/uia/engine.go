package uia

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/ratelimit"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/tokens"
)

// DefaultTTL is the session lifetime when Engine.TTL is zero.
const DefaultTTL = 15 * time.Minute

// ErrAlreadyFinished is returned by Finish when another request finished
// the session first; the caller rolls back and answers with a fresh
// Authenticate, which replays the stored response.
var ErrAlreadyFinished = errors.New("uia: session already finished")

// Engine runs user-interactive authentication.
type Engine struct {
	Store *storage.Store
	// Credentials checks the m.login.password stage exactly as /login does.
	Credentials *credentials.Checker
	// Limits charges failed password stages to the account's failed-login
	// bucket (nil: no limits).
	Limits *ratelimit.Limiter
	TTL    time.Duration
	Now    func() time.Time
	// OAuth tells which devices are OAuth sessions (they get m.oauth
	// instead of m.login.password; nil: none are). AccountPage is the
	// account page's URL (the m.oauth stage needs it).
	OAuth       OAuthSessions
	AccountPage string
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) ttl() time.Duration {
	if e.TTL > 0 {
		return e.TTL
	}
	return DefaultTTL
}

// session is a decoded uia_sessions row.
type session struct {
	row       storage.UIASession
	completed []string
	params    map[string]any
	isNew     bool
}

func unknownSession() *matrixerr.Error {
	return matrixerr.New(http.StatusBadRequest, "M_UNKNOWN", "Unknown or expired user-interactive auth session")
}

// stageFailure is a stage the client attempted and failed: it is answered
// with the challenge plus errcode and error, keeping the session.
type stageFailure struct{ code, msg string }

func (f *stageFailure) Error() string { return f.code + ": " + f.msg }

// Authenticate checks req's auth against req.Flows; see the package
// documentation for the answers.
func (e *Engine) Authenticate(ctx context.Context, req Request) (Result, error) {
	if len(req.Flows) == 0 {
		return Result{}, errors.New("uia: Authenticate without flows")
	}
	sid, _ := req.Auth["session"].(string)
	stage, _ := req.Auth["type"].(string)
	if stage == StageOAuth {
		stage = "" // completed on the account page, not by the client
	}
	for attempt := 0; ; attempt++ {
		s, err := e.open(ctx, req, sid)
		if err != nil {
			return Result{}, err
		}
		if s.row.Result != "" {
			return Result{SessionID: s.row.SessionID, Params: s.params, Replay: json.RawMessage(s.row.Result)}, nil
		}
		// A retry of an m.oauth challenge: the stage is done once the user
		// approved the operation on the account page.
		if !s.isNew && offered(req.Flows, s.completed, StageOAuth) && !slices.Contains(s.completed, StageOAuth) {
			ok, err := e.ConsumeApproval(ctx, e.Store.DB, req.UserID, req.Operation)
			if err != nil {
				return Result{}, err
			}
			if ok {
				s.completed = append(s.completed, StageOAuth)
			}
		}
		var failure *stageFailure
		var reserve string // registration token to reserve with this stage
		if stage != "" && !slices.Contains(s.completed, stage) {
			reserve, err = e.attempt(ctx, req, s, stage)
			if errors.As(err, &failure) {
				err = nil
			} else if err != nil {
				return Result{}, err
			} else {
				s.completed = append(s.completed, stage)
			}
		}
		saved, err := e.save(ctx, s, reserve)
		if errors.Is(err, errTokenUnavailable) {
			// Unknown, expired or used up: the stage failed after all.
			failure = &stageFailure{"M_FORBIDDEN", "Invalid registration token"}
			s.completed = slices.DeleteFunc(s.completed, func(st string) bool { return st == StageRegistrationToken })
			saved, err = e.save(ctx, s, "")
		}
		if err != nil {
			return Result{}, err
		}
		if !saved {
			// Another request of this session changed it meanwhile: start over
			// from the stored state.
			if attempt < 3 {
				sid = s.row.SessionID
				continue
			}
			return Result{}, matrixerr.New(http.StatusConflict, "M_UNKNOWN", "Concurrent requests on one auth session; retry")
		}
		if failure == nil && flowComplete(req.Flows, s.completed) {
			return Result{SessionID: s.row.SessionID, Params: s.params}, nil
		}
		return Result{}, e.challenge(req.Flows, req.ChallengeParams, s, failure)
	}
}

// Replay returns the stored response of the session named in req.Auth if
// that session finished req's operation, nil otherwise; it attempts no
// stage. Registration uses it to answer a repeated final request whose
// username is now taken (by that very request's first run).
func (e *Engine) Replay(ctx context.Context, req Request) (json.RawMessage, error) {
	sid, _ := req.Auth["session"].(string)
	if sid == "" {
		return nil, nil
	}
	s, err := e.open(ctx, req, sid)
	if _, ok := matrixerr.As(err); ok {
		return nil, nil // unknown, expired or another request's session
	}
	if err != nil || s.row.Result == "" {
		return nil, err
	}
	return json.RawMessage(s.row.Result), nil
}

// open loads the session named by sid, or prepares a new one when sid is "".
func (e *Engine) open(ctx context.Context, req Request, sid string) (*session, error) {
	now := e.now()
	if sid == "" {
		params := req.Params
		if params == nil {
			params = map[string]any{}
		}
		pj, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("uia: encode params: %w", err)
		}
		return &session{isNew: true, params: params, row: storage.UIASession{
			SessionID: tokens.NewSessionID(), Operation: req.Operation, UserID: req.UserID,
			Completed: "[]", Params: string(pj), CreatedTS: now.UnixMilli(),
			ExpiresTS: now.Add(e.ttl()).UnixMilli(),
		}}, nil
	}
	s := &session{}
	err := e.Store.R.NewSelect().Model(&s.row).Where("session_id = ?", sid).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && s.row.ExpiresTS <= now.UnixMilli()) {
		return nil, unknownSession()
	}
	if err != nil {
		return nil, err
	}
	if s.row.Operation != req.Operation || s.row.UserID != req.UserID {
		return nil, matrixerr.Forbidden("This auth session was started for a different request")
	}
	if err := json.Unmarshal([]byte(s.row.Completed), &s.completed); err != nil {
		return nil, fmt.Errorf("uia: session %s completed: %w", sid, err)
	}
	if err := json.Unmarshal([]byte(s.row.Params), &s.params); err != nil {
		return nil, fmt.Errorf("uia: session %s params: %w", sid, err)
	}
	// The first request's parameters win; a parameter it lacked is taken
	// from a later request.
	for k, v := range req.Params {
		if _, ok := s.params[k]; !ok {
			s.params[k] = v
		}
	}
	return s, nil
}

// attempt checks one stage. It returns a *stageFailure for a failed stage,
// any other error as is, and for a well-formed registration token that
// token: save checks and reserves it atomically together with the stage.
func (e *Engine) attempt(ctx context.Context, req Request, s *session, stage string) (string, error) {
	if !offered(req.Flows, s.completed, stage) {
		return "", &stageFailure{"M_UNRECOGNIZED", "Stage " + stage + " is not offered here"}
	}
	switch stage {
	case StageDummy:
		return "", nil
	case StagePassword:
		return "", e.checkPassword(ctx, req)
	case StageRegistrationToken:
		tok, _ := req.Auth["token"].(string)
		if !ValidRegistrationToken(tok) {
			return "", &stageFailure{"M_FORBIDDEN", "Invalid registration token"}
		}
		return tok, nil
	}
	return "", &stageFailure{"M_UNRECOGNIZED", "Unsupported stage " + stage}
}

var registrationTokenRE = regexp.MustCompile(`\A[A-Za-z0-9._~-]{1,64}\z`)

// ValidRegistrationToken reports whether tok has the grammar the spec
// gives registration tokens.
func ValidRegistrationToken(tok string) bool { return registrationTokenRE.MatchString(tok) }

func (e *Engine) checkPassword(ctx context.Context, req Request) error {
	if req.UserID == "" {
		return matrixerr.Forbidden("The password stage needs a logged-in user")
	}
	cred, err := credentials.FromAuth(req.Auth)
	if err != nil {
		if me, ok := matrixerr.As(err); ok {
			return &stageFailure{me.Code, me.Message}
		}
		return err
	}
	uid, err := e.Credentials.UserID(ctx, cred.Identifier)
	if err != nil {
		return err
	}
	if uid != "" && uid != req.UserID {
		return matrixerr.Forbidden("You can only authenticate as yourself")
	}
	// Password guesses through UIA (e.g. with a stolen access token) draw
	// on the same failed-login bucket of the account as /login.
	attempt, err := e.Limits.BeginLogin(ctx, req.UserID)
	if err != nil {
		return err
	}
	if err := e.Credentials.Check(ctx, uid, cred.Password); err != nil {
		if me, ok := matrixerr.As(err); ok {
			return &stageFailure{me.Code, me.Message}
		}
		return err
	}
	return attempt.Succeeded(ctx)
}

// save writes the session: a new one is inserted (after sweeping expired
// sessions), an existing one is updated only if nobody changed it since it
// was read (false, nil otherwise). A registration token to reserve is
// counted as pending in the same transaction.
func (e *Engine) save(ctx context.Context, s *session, reserve string) (bool, error) {
	cj, err := json.Marshal(s.completed)
	if err != nil {
		return false, err
	}
	if s.completed == nil {
		cj = []byte("[]")
	}
	pj, err := json.Marshal(s.params)
	if err != nil {
		return false, fmt.Errorf("uia: encode params: %w", err)
	}
	if !s.isNew && string(cj) == s.row.Completed && string(pj) == s.row.Params && reserve == "" {
		return true, nil
	}
	now := e.now().UnixMilli()
	saved := false
	err = e.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if s.isNew {
			// Expired sessions go first, so the uses they held are free.
			if err := e.sweep(ctx, tx, now); err != nil {
				return err
			}
		}
		if reserve != "" {
			res, err := tx.NewUpdate().Model((*storage.RegistrationToken)(nil)).
				Set("pending = pending + 1").
				Where("token = ?", reserve).
				Where("expiry_ts IS NULL OR expiry_ts > ?", now).
				Where("uses_allowed IS NULL OR pending + completed < uses_allowed").
				Exec(ctx)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errTokenUnavailable
			}
		}
		var tok *string
		if reserve != "" {
			tok = &reserve
		}
		if s.isNew {
			row := s.row
			row.Completed, row.Params, row.RegistrationToken = string(cj), string(pj), tok
			if _, err := tx.NewInsert().Model(&row).Exec(ctx); err != nil {
				return err
			}
			saved = true
			return nil
		}
		q := tx.NewUpdate().Model((*storage.UIASession)(nil)).
			Set("completed = ?", string(cj)).Set("params = ?", string(pj))
		if tok != nil {
			q = q.Set("registration_token = ?", *tok)
		}
		res, err := q.Where("session_id = ?", s.row.SessionID).
			Where("completed = ? AND params = ? AND result = ''", s.row.Completed, s.row.Params).
			Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errNotSaved
		}
		saved = true
		return nil
	})
	if errors.Is(err, errNotSaved) {
		return false, nil
	}
	return saved, err
}

var (
	errNotSaved         = errors.New("uia: session changed concurrently")
	errTokenUnavailable = errors.New("uia: registration token unknown, expired or used up")
)

// sweep deletes expired sessions and releases the registration-token uses
// that unfinished ones had reserved. DELETE … RETURNING hands each expired
// row to exactly one sweeper, also with several processes.
func (e *Engine) sweep(ctx context.Context, tx bun.IDB, now int64) error {
	var gone []storage.UIASession
	err := tx.NewDelete().Model((*storage.UIASession)(nil)).Where("expires_ts <= ?", now).
		Returning("registration_token, result").Scan(ctx, &gone)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("uia: sweep expired sessions: %w", err)
	}
	for _, g := range gone {
		if g.RegistrationToken == nil || g.Result != "" {
			continue
		}
		if _, err := tx.NewUpdate().Model((*storage.RegistrationToken)(nil)).Set("pending = pending - 1").
			Where("token = ? AND pending > 0", *g.RegistrationToken).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Finish records response as the outcome of the session, inside the
// operation's transaction tx, and counts the registration token use the
// session reserved.
func (e *Engine) Finish(ctx context.Context, tx bun.IDB, sessionID string, response any) error {
	js, err := json.Marshal(response)
	if err != nil {
		return fmt.Errorf("uia: encode response: %w", err)
	}
	var row storage.UIASession
	err = tx.NewUpdate().Model(&row).Set("result = ?", string(js)).
		Where("session_id = ? AND result = '' AND expires_ts > ?", sessionID, e.now().UnixMilli()).
		Returning("registration_token").Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		n, err := tx.NewSelect().Model((*storage.UIASession)(nil)).
			Where("session_id = ? AND result <> ''", sessionID).Count(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrAlreadyFinished
		}
		return unknownSession()
	}
	if err != nil {
		return err
	}
	if row.RegistrationToken != nil {
		if _, err := tx.NewUpdate().Model((*storage.RegistrationToken)(nil)).
			Set("pending = pending - 1").Set("completed = completed + 1").
			Where("token = ? AND pending > 0", *row.RegistrationToken).Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// offered reports whether stage is the next stage of a flow whose earlier
// stages are all completed.
func offered(flows []Flow, completed []string, stage string) bool {
	for _, f := range flows {
		for _, st := range f.Stages {
			if st == stage {
				return true
			}
			if !slices.Contains(completed, st) {
				break
			}
		}
	}
	return false
}

func flowComplete(flows []Flow, completed []string) bool {
	for _, f := range flows {
		done := true
		for _, st := range f.Stages {
			if !slices.Contains(completed, st) {
				done = false
				break
			}
		}
		if done {
			return true
		}
	}
	return false
}

// challenge is the 401 answer: flows, params (always present: matrix-nio
// needs it), session and completed, plus errcode and error after a failed
// stage.
func (e *Engine) challenge(flows []Flow, params map[string]any, s *session, failure *stageFailure) *matrixerr.Error {
	completed := s.completed
	if completed == nil {
		completed = []string{}
	}
	if params == nil {
		params = map[string]any{}
	}
	me := &matrixerr.Error{Status: http.StatusUnauthorized, Extra: map[string]any{
		"flows":     flows,
		"params":    params,
		"session":   s.row.SessionID,
		"completed": completed,
	}}
	if failure != nil {
		me.Code, me.Message = failure.code, failure.msg
	}
	return me
}
