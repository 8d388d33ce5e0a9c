package csapi

import (
	"encoding/json"

	"github.com/myelin-hs/myelin/impl/matrixerr"
)

// authDict turns a request's generated "auth" object (nil when absent)
// into the map uia.Request.Auth takes. The generated types keep the
// stage-specific keys (password, identifier, …) as additional properties;
// a JSON round trip puts them back beside type and session.
func authDict(authData any) (map[string]any, error) {
	if authData == nil {
		return nil, nil
	}
	js, err := json.Marshal(authData)
	if err != nil {
		return nil, matrixerr.BadJSON("Invalid auth object")
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, matrixerr.BadJSON("Invalid auth object")
	}
	return m, nil
}
