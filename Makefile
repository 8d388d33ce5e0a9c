# Myelin: the two set-up commands are `make run` and `make test`.
GO        ?= go
BIN       ?= bin/myelin
# Packages whose tests need nothing but Go (and PostgreSQL when reachable).
PKGS      ?= ./...
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: all generate build run test lint conformance bench check-generated

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
	$(GO) test $(TESTFLAGS) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Fails when the committed generated code differs from what go generate makes.
check-generated: generate
	@git diff --exit-code -- gen/ || (echo "generated code under gen/ is stale: run make generate and commit" && exit 1)
	@test -z "$$(git status --porcelain -- gen/)" || (git status --porcelain -- gen/; echo "untracked generated files"; exit 1)

conformance:
	$(GO) test -count=1 -v -run 'TestConformance' ./conformance/

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
