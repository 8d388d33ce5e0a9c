package csapi

// Device management (spec module "Device management"): list, show, rename
// and delete the caller's devices. The rules live in impl/devices.

import (
	"context"
	"errors"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/storage"
	"github.com/myelin-hs/myelin/impl/uia"
)

// deviceJSON is the generated Device object (GetDevice200JSONResponse's
// fields; GetDevices200JSONResponse.Devices holds the same anonymous
// struct). Its optional fields have no omitempty (a generator overlay), so
// unknown values go out as JSON null: matrix-nio rejects a device list in
// which any device lacks one of the keys.
type deviceJSON = struct {
	DeviceId    string  `json:"device_id"`
	DisplayName *string `json:"display_name"`
	LastSeenIp  *string `json:"last_seen_ip"`
	LastSeenTs  *int64  `json:"last_seen_ts"`
}

func toDeviceJSON(d storage.Device) deviceJSON {
	return deviceJSON{DeviceId: d.DeviceID, DisplayName: d.DisplayName, LastSeenIp: d.LastSeenIP, LastSeenTs: d.LastSeenTS}
}

func (s *Server) GetDevices(ctx context.Context, _ clientapi.GetDevicesRequestObject) (clientapi.GetDevicesResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := s.Devices.List(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, len(ds))
	for i, d := range ds {
		out[i] = toDeviceJSON(d)
	}
	return clientapi.GetDevices200JSONResponse{Devices: &out}, nil
}

func (s *Server) GetDevice(ctx context.Context, req clientapi.GetDeviceRequestObject) (clientapi.GetDeviceResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	d, err := s.Devices.Get(ctx, p.UserID, req.DeviceId)
	if err != nil {
		return nil, err
	}
	return clientapi.GetDevice200JSONResponse(toDeviceJSON(d)), nil
}

func (s *Server) UpdateDevice(ctx context.Context, req clientapi.UpdateDeviceRequestObject) (clientapi.UpdateDeviceResponseObject, error) {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if p.AppService != "" {
		return s.updateDeviceAsAppService(ctx, p, req)
	}
	var name *string
	if req.Body != nil {
		name = req.Body.DisplayName
	}
	if err := s.Devices.Rename(ctx, p.UserID, req.DeviceId, name); err != nil {
		return nil, err
	}
	return clientapi.UpdateDevice200JSONResponse{}, nil
}

func (s *Server) DeleteDevice(ctx context.Context, req clientapi.DeleteDeviceRequestObject) (clientapi.DeleteDeviceResponseObject, error) {
	var authData any
	if req.Body != nil && req.Body.Auth != nil {
		authData = req.Body.Auth
	}
	link := uia.Link{Action: uia.ActionDeviceDelete, DeviceID: req.DeviceId}
	if err := s.deleteDevices(ctx, uia.OpDeleteDevice(req.DeviceId), []string{req.DeviceId}, authData, link); err != nil {
		return nil, err
	}
	return clientapi.DeleteDevice200JSONResponse{}, nil
}

func (s *Server) DeleteDevices(ctx context.Context, req clientapi.DeleteDevicesRequestObject) (clientapi.DeleteDevicesResponseObject, error) {
	var ids []string
	var authData any
	if req.Body != nil {
		ids = req.Body.Devices
		if req.Body.Auth != nil {
			authData = req.Body.Auth
		}
	}
	if err := s.deleteDevices(ctx, uia.OpDeleteDevices(ids), ids, authData, uia.Link{Action: uia.ActionDevicesList}); err != nil {
		return nil, err
	}
	return clientapi.DeleteDevices200JSONResponse{}, nil
}

// deleteDevices runs the m.login.password UIA the spec's security note
// asks for (a stolen token alone must not log the real user out), bound to
// op (these exact devices), then deletes the devices and finishes the
// session in one transaction. An OAuth session, which has no password,
// is sent to link on the account page (m.oauth).
func (s *Server) deleteDevices(ctx context.Context, op string, ids []string, authData any, link uia.Link) error {
	p, err := auth.MustFromContext(ctx)
	if err != nil {
		return err
	}
	if p.AppService != "" {
		// An application service deletes its users' devices without
		// user-interactive auth (v1.17).
		_, err := s.Devices.Delete(ctx, p.UserID, ids, nil)
		return err
	}
	dict, err := authDict(authData)
	if err != nil {
		return err
	}
	flows, params, err := s.UIA.FlowsFor(ctx, p.UserID, p.DeviceID, link)
	if err != nil {
		return err
	}
	res, err := s.UIA.Authenticate(ctx, uia.Request{
		Operation:       op,
		UserID:          p.UserID,
		Flows:           flows,
		ChallengeParams: params,
		Auth:            dict,
	})
	if err != nil {
		return err
	}
	if res.Replay != nil {
		return nil // this session already deleted them: the answer is {} again
	}
	_, err = s.Devices.Delete(ctx, p.UserID, ids, func(ctx context.Context, tx bun.Tx) error {
		return s.UIA.Finish(ctx, tx, res.SessionID, struct{}{})
	})
	if errors.Is(err, uia.ErrAlreadyFinished) {
		return nil // a concurrent retry of this session did the deletion
	}
	return err
}
