package uia

import (
	"context"
	"database/sql"
	"errors"

	"github.com/myelin-hs/myelin/impl/storage"
)

// CompleteStage completes one stage of an existing session outside the
// request it protects: the fallback web page of that stage posts here. The
// session keeps its operation and user, so the stage counts only for what
// the session was started for; the client then retries its request with
// the session alone. A password stage without an identifier authenticates
// the session's user.
func (e *Engine) CompleteStage(ctx context.Context, sessionID, stage string, auth map[string]any) error {
	var row storage.UIASession
	err := e.Store.R.NewSelect().Model(&row).Column("operation", "user_id").
		Where("session_id = ?", sessionID).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return unknownSession()
	}
	if err != nil {
		return err
	}
	a := make(map[string]any, len(auth)+3)
	for k, v := range auth {
		a[k] = v
	}
	a["type"], a["session"] = stage, sessionID
	if _, ok := a["identifier"]; !ok && stage == StagePassword && row.UserID != "" {
		a["identifier"] = map[string]any{"type": "m.id.user", "user": row.UserID}
	}
	// A flow of just this stage: Authenticate checks and records it with
	// all the usual rules (expiry, binding, concurrent updates); whether
	// the operation's own flows are then complete is decided when the
	// client retries the operation.
	_, err = e.Authenticate(ctx, Request{
		Operation: row.Operation,
		UserID:    row.UserID,
		Flows:     []Flow{{Stages: []string{stage}}},
		Auth:      a,
	})
	return err
}
