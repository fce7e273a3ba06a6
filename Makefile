# One command for everything CI checks: `make test`.
# It installs what the suite needs that Go modules do not bring.
GO ?= go

.PHONY: test deps vet unit build bench fuzz

test: deps vet unit

# Nothing outside Go modules is needed yet; later doors add their peers here
# (npm packages, Debian packages) so a fresh machine needs no manual step.
deps:
	$(GO) mod download

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/agentpdp ./cmd/agentpdp

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pdp/... ./envoyauthz/...

# Short fuzzing rounds of every fuzz target (not part of `test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done
