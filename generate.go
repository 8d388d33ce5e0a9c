// Package myelin is the root of the Myelin module. Running `go generate ./...`
// here regenerates everything under gen/ from the vendored spec in spec/:
// first the OpenAPI 3 documents (gen/specgen bundles the Swagger 2.0 files,
// applies the documented overlays and converts them with kin-openapi), then
// the Echo strict-server interfaces, models and embedded specs (oapi-codegen,
// pinned as a tool dependency in go.mod).
package myelin

//go:generate go run ./gen/specgen -spec spec -out gen
//go:generate go tool oapi-codegen -config gen/clientapi/oapi-codegen.yaml gen/clientapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/fedapi/oapi-codegen.yaml gen/fedapi/openapi.yaml
