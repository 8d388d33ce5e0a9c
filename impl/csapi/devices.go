package csapi

// Device management (spec module "Device management"): list, show, rename
// and delete the caller's devices. The rules live in impl/devices.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
	"github.com/myelin-hs/myelin/impl/auth"
	"github.com/myelin-hs/myelin/impl/storage"
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
	var name *string
	if req.Body != nil {
		name = req.Body.DisplayName
	}
	if err := s.Devices.Rename(ctx, p.UserID, req.DeviceId, name); err != nil {
		return nil, err
	}
	return clientapi.UpdateDevice200JSONResponse{}, nil
}

func (s *Server) DeleteDevice(context.Context, clientapi.DeleteDeviceRequestObject) (clientapi.DeleteDeviceResponseObject, error) {
	return nil, notYet("DELETE /devices/{deviceId}")
}

func (s *Server) DeleteDevices(context.Context, clientapi.DeleteDevicesRequestObject) (clientapi.DeleteDevicesResponseObject, error) {
	return nil, notYet("POST /delete_devices")
}
