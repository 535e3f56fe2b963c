# offload: `make demo` offloads a real build to a local builder;
# `make test` runs every test. Both install their Debian packages first.

export CGO_ENABLED := 0
# Go from /usr/local/go, where the official tarball puts it, when not on PATH.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 5s
FUZZMINIMIZETIME ?= 0

.PHONY: all build deps sid-root test unit race fuzz qemu cross lint demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w -X github.com/offload-nix/offload/internal/cli.Version=$(VERSION)" -o offload ./cmd/offload

deps:
	@scripts/deps.sh

test: deps sid-root lint unit race fuzz cross qemu
	@echo "make test: all passed"

# A Debian unstable root with current Nix (2.34), built once and cached in
# /var/cache/offload, for the end-to-end tests on current Nix.
sid-root:
	@scripts/unstable-root.sh >/dev/null

lint:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOARCH=arm GOARM=6 $(GO) vet ./...

# Every package's tests; scripts/testsum prints failures, skips and the
# count, and fails under CI on a skip internal/testenv does not allow.
unit:
	@$(GO) build -o /tmp/offload-testsum ./scripts/testsum
	$(GO) test -json -count=1 -timeout 25m ./... | /tmp/offload-testsum

race:
	@if [ -d pkg/slots ]; then CGO_ENABLED=1 $(GO) test -count=1 -race -run 'MultiProcess|Concurrent' ./pkg/slots/; fi

# Every fuzz target for FUZZTIME each (a duration, or a count like 20000x);
# scripts/fuzz.sh says why a bare "context deadline exceeded" is not a failure.
fuzz:
	@GO="$(GO)" FUZZTIME="$(FUZZTIME)" FUZZMINIMIZETIME="$(FUZZMINIMIZETIME)" scripts/fuzz.sh

cross:
	VERSION=$(VERSION) scripts/cross-build.sh

qemu:
	@if [ -x scripts/qemu-test.sh ]; then scripts/qemu-test.sh; fi

demo: deps build
	scripts/demo.sh

clean:
	rm -rf dist offload
