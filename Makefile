# Myelin: the two set-up commands are `make run` and `make test`.
GO        ?= go
BIN       ?= bin/myelin
# Packages whose tests need nothing but Go (and PostgreSQL when reachable).
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 20m
# goolm: mautrix-go's pure-Go crypto for its real-client test
# (conformance/clients/mautrix); nothing else depends on the tag.
GOTAGS    ?= goolm

.PHONY: all generate build run test lint conformance clients bench check-generated fuzz

all: build

generate:
	$(GO) generate ./...

build:
	$(GO) build -o $(BIN) ./cmd/myelin

# Runs the server on 127.0.0.1:8008 with SQLite in ./data/myelin.db.
# Pass settings through MYELIN_* variables, e.g. MYELIN_REGISTRATION=open make run
run: build
	./$(BIN) serve

# Unit and end-to-end tests on SQLite, and on PostgreSQL when one answers at
# MYELIN_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres).
test:
	$(GO) test -tags $(GOTAGS) $(TESTFLAGS) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(GOTAGS) ./...

# Fails when the committed generated code (gen/, and the web pages'
# *_templ.go from their .templ files) differs from what go generate makes.
GENERATED = gen/ ':(glob)impl/**/*_templ.go'
check-generated: generate
	@git diff --exit-code -- $(GENERATED) || (echo "generated code is stale: run make generate and commit" && exit 1)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || (git status --porcelain -- $(GENERATED); echo "untracked generated files"; exit 1)

# Replays the spec's examples against real servers (SQLite, and PostgreSQL
# when reachable) and prints the coverage table; fails on any failed case.
# Run inside conformance/ so go test streams the table even when it passes.
conformance:
	cd conformance && $(GO) test -count=1 -run '^TestConformance' -conformance.report

# Drives a real myelin process with matrix-nio and matrix-js-sdk through the
# core flows, matrix-js-sdk's secret storage and key backup with Rust
# crypto, matrix-js-sdk's emoji (SAS) verification of a user's new device
# and its Olm to-device messages between two federated myelin processes,
# mautrix-go through cross-signing set-up, and the OAuth 2.0 API with
# matrix-js-sdk's OIDC helpers in headless Chromium and golang.org/x/oauth2.
# Installs matrix-js-sdk and esbuild from the lockfile when missing or
# stale; needs /usr/bin/python3 with python3-matrix-nio (Debian), Node 20
# and Chromium.
clients: conformance/clients/js/node_modules/.package-lock.json
	MYELIN_TEST_REQUIRE_CLIENTS=1 $(GO) test -count=1 -v -run '^(TestRealClients|TestMatrixJSSDK|TestGolangOAuth2)' ./conformance/
	MYELIN_TEST_REQUIRE_CLIENTS=1 $(GO) test -tags $(GOTAGS) -count=1 -v ./conformance/clients/mautrix/

# npm ci (dev dependencies included: esbuild bundles the browser client)
# when node_modules is missing or older than the lockfile.
conformance/clients/js/node_modules/.package-lock.json: conformance/clients/js/package-lock.json conformance/clients/js/package.json
	cd conformance/clients/js && npm ci --include=dev --no-audit --no-fund

# The load benchmark (cmd/myelin-bench: a real myelin process against
# in-run baselines, on SQLite and on PostgreSQL when reachable), then the
# micro benchmarks. BENCHFLAGS=-quick for a short CI run; -strict makes a
# missed target fail.
BENCHFLAGS ?=
BENCHTIME  ?= 1s
bench: build
	$(GO) build -o bin/myelin-bench ./cmd/myelin-bench
	./bin/myelin-bench -myelin $(BIN) $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./impl/...

# Each fuzzer for FUZZTIME (make test runs only their seeds): the client
# and federation APIs through the whole stack, the X-Matrix parser, server
# name resolution, canonical JSON and stored password hashes.
FUZZTIME ?= 30s
FUZZERS = \
	./impl/app:FuzzClientBodiesGetMatrixErrorsNever500 \
	./impl/federation:FuzzSignedFederationBodiesGetMatrixErrorsNever500 \
	./impl/federation:FuzzResolvedServerNamesAreHTTPSHosts \
	./impl/signing:FuzzParseXMatrix \
	./impl/signing:FuzzCanonical \
	./impl/passwords:FuzzVerify
fuzz:
	@set -e; for f in $(FUZZERS); do \
		echo "== $${f#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME) $${f%%:*}; \
	done
