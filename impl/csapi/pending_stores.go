package csapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

// Operations of account data and server-side key backup (issue 19) that are not served yet: each answers 501
// M_UNRECOGNIZED and is marked not served in the coverage table
// (coverage.go), so /versions does not claim the versions that need them.

func (s *Server) DeleteRoomKeys(context.Context, clientapi.DeleteRoomKeysRequestObject) (clientapi.DeleteRoomKeysResponseObject, error) {
	return nil, notYet("deleteRoomKeys")
}

func (s *Server) GetRoomKeys(context.Context, clientapi.GetRoomKeysRequestObject) (clientapi.GetRoomKeysResponseObject, error) {
	return nil, notYet("getRoomKeys")
}

func (s *Server) PutRoomKeys(context.Context, clientapi.PutRoomKeysRequestObject) (clientapi.PutRoomKeysResponseObject, error) {
	return nil, notYet("putRoomKeys")
}

func (s *Server) DeleteRoomKeysByRoomId(context.Context, clientapi.DeleteRoomKeysByRoomIdRequestObject) (clientapi.DeleteRoomKeysByRoomIdResponseObject, error) {
	return nil, notYet("deleteRoomKeysByRoomId")
}

func (s *Server) GetRoomKeysByRoomId(context.Context, clientapi.GetRoomKeysByRoomIdRequestObject) (clientapi.GetRoomKeysByRoomIdResponseObject, error) {
	return nil, notYet("getRoomKeysByRoomId")
}

func (s *Server) PutRoomKeysByRoomId(context.Context, clientapi.PutRoomKeysByRoomIdRequestObject) (clientapi.PutRoomKeysByRoomIdResponseObject, error) {
	return nil, notYet("putRoomKeysByRoomId")
}

func (s *Server) DeleteRoomKeyBySessionId(context.Context, clientapi.DeleteRoomKeyBySessionIdRequestObject) (clientapi.DeleteRoomKeyBySessionIdResponseObject, error) {
	return nil, notYet("deleteRoomKeyBySessionId")
}

func (s *Server) GetRoomKeyBySessionId(context.Context, clientapi.GetRoomKeyBySessionIdRequestObject) (clientapi.GetRoomKeyBySessionIdResponseObject, error) {
	return nil, notYet("getRoomKeyBySessionId")
}

func (s *Server) PutRoomKeyBySessionId(context.Context, clientapi.PutRoomKeyBySessionIdRequestObject) (clientapi.PutRoomKeyBySessionIdResponseObject, error) {
	return nil, notYet("putRoomKeyBySessionId")
}

func (s *Server) GetRoomKeysVersionCurrent(context.Context, clientapi.GetRoomKeysVersionCurrentRequestObject) (clientapi.GetRoomKeysVersionCurrentResponseObject, error) {
	return nil, notYet("getRoomKeysVersionCurrent")
}

func (s *Server) PostRoomKeysVersion(context.Context, clientapi.PostRoomKeysVersionRequestObject) (clientapi.PostRoomKeysVersionResponseObject, error) {
	return nil, notYet("postRoomKeysVersion")
}

func (s *Server) DeleteRoomKeysVersion(context.Context, clientapi.DeleteRoomKeysVersionRequestObject) (clientapi.DeleteRoomKeysVersionResponseObject, error) {
	return nil, notYet("deleteRoomKeysVersion")
}

func (s *Server) GetRoomKeysVersion(context.Context, clientapi.GetRoomKeysVersionRequestObject) (clientapi.GetRoomKeysVersionResponseObject, error) {
	return nil, notYet("getRoomKeysVersion")
}

func (s *Server) PutRoomKeysVersion(context.Context, clientapi.PutRoomKeysVersionRequestObject) (clientapi.PutRoomKeysVersionResponseObject, error) {
	return nil, notYet("putRoomKeysVersion")
}

func (s *Server) GetAccountData(context.Context, clientapi.GetAccountDataRequestObject) (clientapi.GetAccountDataResponseObject, error) {
	return nil, notYet("getAccountData")
}

func (s *Server) SetAccountData(context.Context, clientapi.SetAccountDataRequestObject) (clientapi.SetAccountDataResponseObject, error) {
	return nil, notYet("setAccountData")
}
