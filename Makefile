# hal0 build and test entry points. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X github.com/hal0ai/hal0/internal/version.Version=$(VERSION) -X github.com/hal0ai/hal0/internal/version.Commit=$(COMMIT)
BINARIES := hal0 hal0-apid hal0-pull hal0-slotd
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
FUZZTIME ?= 10s
SOAK ?= 1h

.PHONY: help build test test-short test-live test-deps lint fmt vet staticcheck fuzz bench bench-api bench-hf demo clean deps deb torture soak

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

build: ## build the four binaries (and the test hub) into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(BINARIES))
	$(GO) build -trimpath -o $(BIN)/hal0-testhub ./internal/hubtest/testhub

test-short: ## plain go test ./... (no root needed; live tests skip with a reason)
	$(GO) test -count=1 ./...

test: lint ## everything CI runs: lint, unit, live systemd, fuzz smoke
	@if [ "$$(id -u)" != 0 ]; then echo "make test runs the live systemd tests and needs root (use make test-short otherwise)"; exit 1; fi
	$(MAKE) --no-print-directory test-deps
	HAL0_LIVE_REQUIRED=1 $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

test-live: ## only the tests that boot a private systemd (root)
	HAL0_LIVE_REQUIRED=1 $(GO) test -count=1 -v -run 'Live|Boot|Unit|Stop|Dial|Namespace' ./internal/livesystemd/ ./internal/sdbus/ ./internal/worker/ ./internal/apid/ ./internal/unitwatch/ ./internal/slotd/ ./internal/catalog/

test-deps: ## install the Debian packages the package tests need (lintian, polkitd; root)
	bash packaging/test-deps.sh

deb: ## the Debian package, its release tarball and their .sha256 into dist/ (packaging/build.sh)
	bash packaging/build.sh

fuzz: ## run every fuzz target for FUZZTIME each
	GO=$(GO) .ci/fuzz-one FuzzParse ./internal/ref/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzParse ./internal/registry/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzEscapeRoundTrip ./internal/unitname/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzParseConfig ./internal/slots/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzHubReplies ./internal/hf/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzPullRequest ./internal/apiserver/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzGGUF ./internal/catalog/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzFLMOutput ./internal/flm/ $(FUZZTIME)
	GO=$(GO) .ci/fuzz-one FuzzSlotRequest ./internal/apiserver/ $(FUZZTIME)

torture: ## the reliability and security suite at full size (root): 50 kills, every fault, slow bodies; figures in test-artifacts/torture/
	HAL0_TORTURE=full HAL0_LIVE_REQUIRED=1 $(GO) test -count=1 -v -timeout 30m ./internal/torture/

soak: ## the live stack under pulls, polls and swaps for SOAK (default 1h; root), failing if a daemon's RSS or fds grow
	HAL0_SOAK=$(SOAK) HAL0_LIVE_REQUIRED=1 $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 48h ./internal/torture/

lint: vet staticcheck ## go vet, staticcheck and gofmt
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@2025.1.1

fmt: ## gofmt the tree
	gofmt -w $$(find . -name '*.go' -not -path './.*')

bench: build ## download benchmark: hal0 vs curl vs aria2c on a 4 GiB sharded GGUF (loopback)
	internal/bench/bench.sh

bench-api: ## hal0-apid under load (status polls with 4 pulls running) and cold start after socket activation (root)
	$(GO) test -run '^$$' -bench StatusLoad -benchtime 1x ./internal/apid/ -load.pin
	HAL0_LIVE_REQUIRED=1 $(GO) test -run '^$$' -bench LiveColdStart -benchtime 10x ./internal/apid/

bench-hf: ## the /hf/ endpoint vs nginx serving a 4 GiB file to curl on loopback (installs nginx if missing)
	$(GO) test -run '^$$' -bench HFServeVsNginx -benchtime 1x -timeout 60m ./internal/hfserve/bench/

demo: build ## pull a generated sharded model from a loopback test hub through hal0-apid (embedded mode) into .demo/
	@rm -rf .demo && mkdir -p .demo
	@echo "hal0-apid runs pulls as child processes here (no systemd needed); its log: .demo/apid.log"
	$(BIN)/hal0-testhub --listen 127.0.0.1:0 --repo demo/tiny-GGUF --quant Q4_K_M --shards 3 --shard-size 48MiB --exec -- \
	  env HAL0_HOME=$(CURDIR)/.demo HAL0_DISK_RESERVE=0 sh -c '\
	    sock=$(CURDIR)/.demo/run/hal0/api.sock; \
	    $(CURDIR)/$(BIN)/hal0-apid --runner=process --listen unix:$$sock 2>$(CURDIR)/.demo/apid.log & apid=$$!; \
	    trap "kill $$apid" EXIT; \
	    i=0; until [ -S $$sock ] || [ $$i -ge 200 ]; do sleep 0.05; i=$$((i+1)); done; \
	    $(CURDIR)/$(BIN)/hal0 model pull demo/tiny-GGUF:Q4_K_M && echo && echo "registry entry:" && \
	    $(CURDIR)/$(BIN)/hal0 model show demo/tiny-GGUF:Q4_K_M'

clean: ## remove build output and demo state
	rm -rf $(BIN) .demo .bench .live dist
