package accountdata

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// Myelin serves no rooms, so it stores no room account data. The room
// operations check what the spec asks of every request (the caller, the
// room ID's form, server-managed types, a JSON object) and then answer the
// spec's errors with the reason: a PUT is 403 M_FORBIDDEN, a GET 404
// M_NOT_FOUND.

const noRooms = "This server has no rooms, so it keeps no room account data"

// checkRoomID accepts the room ID grammar's outline: a '!' sigil, at most
// 255 bytes (room version 12 IDs have no server part).
func checkRoomID(roomID string) error {
	if len(roomID) < 2 || roomID[0] != '!' || len(roomID) > 255 || strings.ContainsAny(roomID, "\x00 ") {
		return matrixerr.InvalidParam(roomID + " is not a valid room ID.")
	}
	return nil
}

// PutRoom answers PUT /user/{userId}/rooms/{roomId}/account_data/{type}.
func (s *Service) PutRoom(_ context.Context, caller, userID, roomID, eventType string, content []byte) error {
	if err := checkAccess(caller, userID, "add"); err != nil {
		return err
	}
	if err := checkRoomID(roomID); err != nil {
		return err
	}
	if err := checkType(eventType); err != nil {
		return err
	}
	if msg, ok := serverManaged[eventType]; ok {
		return matrixerr.New(http.StatusMethodNotAllowed, "M_BAD_JSON", msg)
	}
	if _, err := compactObject(content); err != nil {
		return err
	}
	return matrixerr.Forbidden(noRooms + ": cannot store account data for room " + roomID)
}

// GetRoom answers GET /user/{userId}/rooms/{roomId}/account_data/{type}.
func (s *Service) GetRoom(_ context.Context, caller, userID, roomID, eventType string) (json.RawMessage, error) {
	if err := checkAccess(caller, userID, "get"); err != nil {
		return nil, err
	}
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	if err := checkType(eventType); err != nil {
		return nil, err
	}
	return nil, matrixerr.NotFound(noRooms + ": no account data for room " + roomID)
}
