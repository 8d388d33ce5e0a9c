package csapi

// Global account data and server-side key backup (issue 19): the caller's
// stores, kept opaque by the domain packages accountdata and keybackup.
// Request bodies are taken raw (server.RawBody), so contents are stored
// byte for byte as JSON (no float64 round trip), and answers are written
// raw through storesResponse.

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/keybackup"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/server"
)

// storesResponse is a 200 answer built outside the generated models.
type storesResponse struct{ v any }

func (r storesResponse) write(w http.ResponseWriter) error { return server.WriteJSON(w, r.v) }

func (r storesResponse) VisitGetAccountDataResponse(w http.ResponseWriter) error { return r.write(w) }
func (r storesResponse) VisitGetRoomKeysResponse(w http.ResponseWriter) error    { return r.write(w) }
func (r storesResponse) VisitGetRoomKeysByRoomIdResponse(w http.ResponseWriter) error {
	return r.write(w)
}
func (r storesResponse) VisitGetRoomKeyBySessionIdResponse(w http.ResponseWriter) error {
	return r.write(w)
}
func (r storesResponse) VisitGetRoomKeysVersionCurrentResponse(w http.ResponseWriter) error {
	return r.write(w)
}
func (r storesResponse) VisitGetRoomKeysVersionResponse(w http.ResponseWriter) error {
	return r.write(w)
}

func (s *Server) GetAccountData(ctx context.Context, req clientapi.GetAccountDataRequestObject) (clientapi.GetAccountDataResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	content, err := s.AccountData.Get(ctx, p.UserID, req.UserId, req.Type)
	if err != nil {
		return nil, err
	}
	return storesResponse{[]byte(content)}, nil
}

func (s *Server) SetAccountData(ctx context.Context, req clientapi.SetAccountDataRequestObject) (clientapi.SetAccountDataResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.AccountData.Put(ctx, p.UserID, req.UserId, req.Type, server.RawBody(ctx)); err != nil {
		return nil, err
	}
	return clientapi.SetAccountData200JSONResponse{}, nil
}

// Room account data: Myelin holds no rooms, so there is none to read and
// none may be stored; the domain answers the spec's errors with the reason.
func (s *Server) GetAccountDataPerRoom(ctx context.Context, req clientapi.GetAccountDataPerRoomRequestObject) (clientapi.GetAccountDataPerRoomResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.AccountData.GetRoom(ctx, p.UserID, req.UserId, req.RoomId, req.Type)
	return nil, err
}

func (s *Server) SetAccountDataPerRoom(ctx context.Context, req clientapi.SetAccountDataPerRoomRequestObject) (clientapi.SetAccountDataPerRoomResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	return nil, s.AccountData.PutRoom(ctx, p.UserID, req.UserId, req.RoomId, req.Type, server.RawBody(ctx))
}

// versionBody is the body of POST and PUT /room_keys/version.
type versionBody struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func decode(ctx context.Context, v any) error {
	if err := json.Unmarshal(server.RawBody(ctx), v); err != nil {
		return matrixerr.BadJSON("Invalid request body: " + err.Error())
	}
	return nil
}

func (s *Server) PostRoomKeysVersion(ctx context.Context, _ clientapi.PostRoomKeysVersionRequestObject) (clientapi.PostRoomKeysVersionResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var b versionBody
	if err := decode(ctx, &b); err != nil {
		return nil, err
	}
	v, err := s.KeyBackup.CreateVersion(ctx, p.UserID, b.Algorithm, b.AuthData)
	if err != nil {
		return nil, err
	}
	return clientapi.PostRoomKeysVersion200JSONResponse{Version: v}, nil
}

func (s *Server) GetRoomKeysVersionCurrent(ctx context.Context, _ clientapi.GetRoomKeysVersionCurrentRequestObject) (clientapi.GetRoomKeysVersionCurrentResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.KeyBackup.GetVersion(ctx, p.UserID, "")
	if err != nil {
		return nil, err
	}
	return storesResponse{info}, nil
}

func (s *Server) GetRoomKeysVersion(ctx context.Context, req clientapi.GetRoomKeysVersionRequestObject) (clientapi.GetRoomKeysVersionResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	info, err := s.KeyBackup.GetVersion(ctx, p.UserID, req.Version)
	if err != nil {
		return nil, err
	}
	return storesResponse{info}, nil
}

func (s *Server) PutRoomKeysVersion(ctx context.Context, req clientapi.PutRoomKeysVersionRequestObject) (clientapi.PutRoomKeysVersionResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var b versionBody
	if err := decode(ctx, &b); err != nil {
		return nil, err
	}
	if err := s.KeyBackup.UpdateVersion(ctx, p.UserID, req.Version, b.Algorithm, b.AuthData, b.Version); err != nil {
		return nil, err
	}
	return clientapi.PutRoomKeysVersion200JSONResponse{}, nil
}

func (s *Server) DeleteRoomKeysVersion(ctx context.Context, req clientapi.DeleteRoomKeysVersionRequestObject) (clientapi.DeleteRoomKeysVersionResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.KeyBackup.DeleteVersion(ctx, p.UserID, req.Version); err != nil {
		return nil, err
	}
	return clientapi.DeleteRoomKeysVersion200JSONResponse{}, nil
}

// roomKeys is the body of PUT /room_keys/keys/{roomId} and an element of
// PUT /room_keys/keys.
type roomKeys struct {
	Sessions map[string]keybackup.KeyData `json:"sessions"`
}

func (s *Server) putKeys(ctx context.Context, version string, keys keybackup.Keys) (keybackup.Update, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return keybackup.Update{}, err
	}
	return s.KeyBackup.PutKeys(ctx, p.UserID, version, keys)
}

func (s *Server) PutRoomKeys(ctx context.Context, req clientapi.PutRoomKeysRequestObject) (clientapi.PutRoomKeysResponseObject, error) {
	var b struct {
		Rooms map[string]roomKeys `json:"rooms"`
	}
	if err := decode(ctx, &b); err != nil {
		return nil, err
	}
	keys := make(keybackup.Keys, len(b.Rooms))
	for room, rk := range b.Rooms {
		keys[room] = rk.Sessions
	}
	u, err := s.putKeys(ctx, req.Params.Version, keys)
	if err != nil {
		return nil, err
	}
	return clientapi.PutRoomKeys200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}

func (s *Server) PutRoomKeysByRoomId(ctx context.Context, req clientapi.PutRoomKeysByRoomIdRequestObject) (clientapi.PutRoomKeysByRoomIdResponseObject, error) {
	var b roomKeys
	if err := decode(ctx, &b); err != nil {
		return nil, err
	}
	u, err := s.putKeys(ctx, req.Params.Version, keybackup.Keys{req.RoomId: b.Sessions})
	if err != nil {
		return nil, err
	}
	return clientapi.PutRoomKeysByRoomId200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}

func (s *Server) PutRoomKeyBySessionId(ctx context.Context, req clientapi.PutRoomKeyBySessionIdRequestObject) (clientapi.PutRoomKeyBySessionIdResponseObject, error) {
	var b keybackup.KeyData
	if err := decode(ctx, &b); err != nil {
		return nil, err
	}
	u, err := s.putKeys(ctx, req.Params.Version, keybackup.Keys{req.RoomId: {req.SessionId: b}})
	if err != nil {
		return nil, err
	}
	return clientapi.PutRoomKeyBySessionId200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}

func (s *Server) GetRoomKeys(ctx context.Context, req clientapi.GetRoomKeysRequestObject) (clientapi.GetRoomKeysResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := s.KeyBackup.GetKeys(ctx, p.UserID, req.Params.Version, "")
	if err != nil {
		return nil, err
	}
	rooms := make(map[string]roomKeys, len(keys))
	for room, sessions := range keys {
		rooms[room] = roomKeys{Sessions: sessions}
	}
	return storesResponse{map[string]any{"rooms": rooms}}, nil
}

func (s *Server) GetRoomKeysByRoomId(ctx context.Context, req clientapi.GetRoomKeysByRoomIdRequestObject) (clientapi.GetRoomKeysByRoomIdResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := s.KeyBackup.GetKeys(ctx, p.UserID, req.Params.Version, req.RoomId)
	if err != nil {
		return nil, err
	}
	sessions := keys[req.RoomId]
	if sessions == nil {
		sessions = map[string]keybackup.KeyData{}
	}
	return storesResponse{roomKeys{Sessions: sessions}}, nil
}

func (s *Server) GetRoomKeyBySessionId(ctx context.Context, req clientapi.GetRoomKeyBySessionIdRequestObject) (clientapi.GetRoomKeyBySessionIdResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	k, err := s.KeyBackup.GetKey(ctx, p.UserID, req.Params.Version, req.RoomId, req.SessionId)
	if err != nil {
		return nil, err
	}
	return storesResponse{k}, nil
}

func (s *Server) deleteKeys(ctx context.Context, version, roomID, sessionID string) (keybackup.Update, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return keybackup.Update{}, err
	}
	return s.KeyBackup.DeleteKeys(ctx, p.UserID, version, roomID, sessionID)
}

func (s *Server) DeleteRoomKeys(ctx context.Context, req clientapi.DeleteRoomKeysRequestObject) (clientapi.DeleteRoomKeysResponseObject, error) {
	u, err := s.deleteKeys(ctx, req.Params.Version, "", "")
	if err != nil {
		return nil, err
	}
	return clientapi.DeleteRoomKeys200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}

func (s *Server) DeleteRoomKeysByRoomId(ctx context.Context, req clientapi.DeleteRoomKeysByRoomIdRequestObject) (clientapi.DeleteRoomKeysByRoomIdResponseObject, error) {
	u, err := s.deleteKeys(ctx, req.Params.Version, req.RoomId, "")
	if err != nil {
		return nil, err
	}
	return clientapi.DeleteRoomKeysByRoomId200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}

func (s *Server) DeleteRoomKeyBySessionId(ctx context.Context, req clientapi.DeleteRoomKeyBySessionIdRequestObject) (clientapi.DeleteRoomKeyBySessionIdResponseObject, error) {
	u, err := s.deleteKeys(ctx, req.Params.Version, req.RoomId, req.SessionId)
	if err != nil {
		return nil, err
	}
	return clientapi.DeleteRoomKeyBySessionId200JSONResponse{Count: int(u.Count), Etag: u.Etag}, nil
}
