// Package myelin is the root of the Myelin module. Running `go generate ./...`
// here regenerates everything under gen/ from the vendored spec in spec/:
// first one OpenAPI 3.1 document per API (gen/specgen bundles the vendored
// v1.19 OpenAPI 3.1 files and applies the documented overlays), then the
// Echo strict-server interfaces and models (oapi-codegen, pinned as a tool
// dependency in go.mod), and two embedded copies of each document, in
// packages of their own so that a binary links only the one it uses:
// gen/<api>/fullspec, the whole document, for the tests' response checks
// and the conformance suite; gen/<api>/reqspec, the document without prose,
// examples and responses (gen/specgen writes it), which the server parses
// at start-up and keeps for request validation. Parsing and keeping the
// whole client-server document cost the server megabytes of heap.
//
// It also compiles the web pages' templ components (impl/**/*.templ, with
// templ pinned as a tool dependency) to the committed *_templ.go files:
// html/template's reflection (MethodByName) made the linker keep every
// exported method of every type, about 7 MB of binary and 4 MB of idle RSS.
package myelin

//go:generate go run ./gen/specgen -spec spec -out gen
//go:generate go tool oapi-codegen -config gen/clientapi/oapi-codegen.yaml gen/clientapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/fedapi/oapi-codegen.yaml gen/fedapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/clientapi/fullspec/oapi-codegen.yaml gen/clientapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/fedapi/fullspec/oapi-codegen.yaml gen/fedapi/openapi.yaml
//go:generate go tool oapi-codegen -config gen/clientapi/reqspec/oapi-codegen.yaml gen/clientapi/reqspec/openapi.yaml
//go:generate go tool oapi-codegen -config gen/fedapi/reqspec/oapi-codegen.yaml gen/fedapi/reqspec/openapi.yaml
//go:generate go tool templ generate -path impl
