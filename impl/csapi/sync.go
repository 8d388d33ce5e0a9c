package csapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/server"
	"github.com/myelin-hs/myelin/impl/syncstream"
	"github.com/myelin-hs/myelin/impl/todevice"
)

// Send-to-device, /sync and /keys/changes (impl/todevice, impl/syncstream).

// SendToDevice queues the messages for their devices. The body is read
// raw: message contents are opaque JSON passed on byte for byte (no
// round trip through float64 numbers).
func (s *Server) SendToDevice(ctx context.Context, req clientapi.SendToDeviceRequestObject) (clientapi.SendToDeviceResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	var body struct {
		Messages todevice.Messages `json:"messages"`
	}
	if err := json.Unmarshal(server.RawBody(ctx), &body); err != nil {
		return nil, matrixerr.BadJSON("Invalid body: " + err.Error())
	}
	if body.Messages == nil {
		return nil, matrixerr.BadJSON(`Missing field "messages"`)
	}
	if err := s.ToDevice.Send(ctx, p.UserID, p.DeviceID, req.EventType, req.TxnId, body.Messages); err != nil {
		return nil, err
	}
	return clientapi.SendToDevice200JSONResponse{}, nil
}

// syncResponse writes the domain response, already shaped as the spec's
// schema.
type syncResponse struct{ r *syncstream.Response }

func (r syncResponse) VisitSyncResponse(w http.ResponseWriter) error { return server.WriteJSON(w, r.r) }

// Sync answers /sync: the device half (to-device, device lists, key
// counts; rooms, presence and account data empty or from their streams).
// set_presence is accepted and has no effect (no presence).
func (s *Server) Sync(ctx context.Context, req clientapi.SyncRequestObject) (clientapi.SyncResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	q := syncstream.Request{Device: syncstream.Device{UserID: p.UserID, DeviceID: p.DeviceID}, TokenHash: p.TokenHash}
	if v := req.Params.Since; v != nil {
		q.Since = *v
	}
	if v := req.Params.Timeout; v != nil {
		q.Timeout = time.Duration(*v) * time.Millisecond
	}
	if v := req.Params.FullState; v != nil {
		q.FullState = *v
	}
	if v := req.Params.Filter; v != nil {
		q.Filter = *v
	}
	r, err := s.Streams.Sync(ctx, q)
	if err != nil {
		return nil, err
	}
	return syncResponse{r}, nil
}

// GetKeysChanges lists the users whose device lists changed between two
// /sync tokens (with no rooms, at most the caller).
func (s *Server) GetKeysChanges(ctx context.Context, req clientapi.GetKeysChangesRequestObject) (clientapi.GetKeysChangesResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	changed, left, err := s.Streams.KeyChanges(ctx, p.UserID, req.Params.From, req.Params.To)
	if err != nil {
		return nil, err
	}
	return clientapi.GetKeysChanges200JSONResponse{Changed: &changed, Left: &left}, nil
}
