package csapi

// Operations of this area not built yet: each answers a clear Matrix error
// (never a panic) until it moves to its own file.

import (
	"context"

	"github.com/myelin-hs/myelin/gen/clientapi"
)

func (s *Server) DeleteDevices(context.Context, clientapi.DeleteDevicesRequestObject) (clientapi.DeleteDevicesResponseObject, error) {
	return nil, notYet("POST /delete_devices")
}
func (s *Server) GetDevices(context.Context, clientapi.GetDevicesRequestObject) (clientapi.GetDevicesResponseObject, error) {
	return nil, notYet("GET /devices")
}
func (s *Server) DeleteDevice(context.Context, clientapi.DeleteDeviceRequestObject) (clientapi.DeleteDeviceResponseObject, error) {
	return nil, notYet("DELETE /devices/{deviceId}")
}
func (s *Server) GetDevice(context.Context, clientapi.GetDeviceRequestObject) (clientapi.GetDeviceResponseObject, error) {
	return nil, notYet("GET /devices/{deviceId}")
}
func (s *Server) UpdateDevice(context.Context, clientapi.UpdateDeviceRequestObject) (clientapi.UpdateDeviceResponseObject, error) {
	return nil, notYet("PUT /devices/{deviceId}")
}
