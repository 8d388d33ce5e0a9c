package csapi

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

// Operations of send-to-device and /sync (issue 14) that are not served yet: each answers 501
// M_UNRECOGNIZED and is marked not served in the coverage table
// (coverage.go), so /versions does not claim the versions that need them.

func (s *Server) SendToDevice(context.Context, clientapi.SendToDeviceRequestObject) (clientapi.SendToDeviceResponseObject, error) {
	return nil, notYet("sendToDevice")
}

func (s *Server) Sync(context.Context, clientapi.SyncRequestObject) (clientapi.SyncResponseObject, error) {
	return nil, notYet("sync")
}
