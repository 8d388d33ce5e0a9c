// Package myelin is the root of the Myelin module. Running `go generate ./...`
// here regenerates everything under gen/ from the vendored spec in spec/:
// first one OpenAPI 3.1 document per API (gen/specgen bundles the vendored
// v1.19 OpenAPI 3.1 files and applies the documented overlays), then the
// Echo strict-server interfaces, models and embedded specs (oapi-codegen,
// pinned as a tool dependency in go.mod).
package myelin

//go:generate go run ./gen/specgen -spec spec -out gen
//go:generate go tool oapi-codegen -config gen/clientapi/oapi-codegen.yaml gen/clientapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/fedapi/oapi-codegen.yaml gen/fedapi/openapi.yaml
