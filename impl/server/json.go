package server

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// WriteJSON writes a 200 answer whose body is v encoded as JSON, or v
// itself when it is already encoded ([]byte). Adapters use it for answers
// built outside the generated models: signed objects (key documents,
// device keys) must travel with every member that was signed, which the
// generated structs would drop.
func WriteJSON(w http.ResponseWriter, v any) error {
	var buf bytes.Buffer
	if raw, ok := v.([]byte); ok {
		buf.Write(raw)
	} else if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := buf.WriteTo(w)
	return err
}
