// Package conformance checks Myelin against the Matrix specification
// itself. Its tests replay every operation's documented examples (built
// from the embedded OpenAPI documents at test time) against real servers
// on SQLite and PostgreSQL and print a coverage table (`make
// conformance`); conformance/validate checks every response any test
// server sends; conformance/clients drives a running server with real
// Matrix client libraries (`make clients`).
package conformance
