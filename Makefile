# vigil: the two commands a newcomer needs are `sudo make demo` and
# `sudo make test`; the rest is for developers.
# sudo resets PATH (secure_path), which loses the usual Go install dir.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/vigil

.PHONY: all build test demo check vet bench-healthcheck bench-ipvs bench-failover clean

all: build

# The advert pacer (internal/pacer) is a C thread, so vigil is built with
# cgo and linked statically (it runs as is in the VM guest too). Without a
# C compiler it is built in pure Go, and its adverts come from Go timers.
STATIC_CGO_BUILD := CGO_ENABLED=1 $(GO) build -tags netgo,osusergo -ldflags '-linkmode=external -extldflags=-static' -o $(BIN) ./cmd/vigil

build:
	@if command -v gcc >/dev/null 2>&1; then \
	  echo "$(STATIC_CGO_BUILD)"; \
	  $(STATIC_CGO_BUILD); \
	else \
	  echo "build: no C compiler (apt-get install gcc libc6-dev): building without the advert pacer" >&2; \
	  CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/vigil; \
	fi

# Every test tier: unit, netns, vm, fuzz (see scripts/test.sh).
test:
	scripts/test.sh

demo:
	scripts/demo.sh

# Validate the example site (works without root).
check: build
	$(BIN) check -c examples/www-telnet.toml --node vs1

vet:
	$(GO) vet ./...

# Benchmarks: each prints its figures (see the README's developer section).
bench-failover:
	scripts/bench-failover.sh

bench-healthcheck:
	scripts/bench-healthcheck.sh

bench-ipvs:
	scripts/bench-ipvs.sh

clean:
	rm -rf bin
