# One command for everything CI checks: `make test`.
# It installs what the suite needs that Go modules do not bring.
GO ?= go

.PHONY: test deps vet unit build bench fuzz

test: deps vet unit

# What the suite needs beyond Go modules, so a fresh machine needs no manual
# step: the MCP peers the e2e tests run (npm, versions pinned in
# e2e/peers/package-lock.json) and the Debian packages of e2e/debian-deps.sh
# (PostgreSQL for the shared approval store, Chromium for the reviewers' page).
deps:
	e2e/debian-deps.sh
	$(GO) mod download
	cd e2e/peers && npm ci --no-audit --no-fund --loglevel=error

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@# go.mod and go.sum as `go mod tidy` leaves them: imports marked direct,
	@# nothing missing or unused (exits non-zero with the diff otherwise).
	$(GO) mod tidy -diff

unit:
	$(GO) test -race -count=1 ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/agentpdp ./cmd/agentpdp

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pdp/... ./envoyauthz/... ./mcpproxy/... ./approvals/...

# Short fuzzing rounds of every fuzz target (not part of `test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done
