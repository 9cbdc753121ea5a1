# lockstep — build, test and measure. `make` alone lists the targets.

GO        ?= go
BIN       := bin/lockstep
PKGS      := ./...
# Benchmarks are run -count times so that benchstat can compare runs.
BENCHCOUNT ?= 10
BENCHTIME  ?= 1x
# Each fuzz target runs this long in `make fuzz`.
FUZZTIME  ?= 20s

.DEFAULT_GOAL := help
.PHONY: help build man test unit run bench bench-e2e fuzz lint clean deb

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/lockstep (no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/lockstep

man: build ## write the manual page bin/lockstep.1 (from the commands' --help)
	env -u LOCKSTEP_CONFIG $(BIN) man > bin/lockstep.1

test: build ## gofmt check, go vet, and every test with -race (end-to-end included)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 15m $(PKGS)

unit: ## fast tests only (no -race, no end-to-end)
	$(GO) test -short $(PKGS)

run: build ## a three-node demo cluster on 127.0.0.1 (Ctrl-C stops it)
	./scripts/cluster-demo.sh

bench: ## Go benchmarks, -count=$(BENCHCOUNT), output ready for benchstat
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) $(PKGS) | tee bench.out

bench-e2e: build ## end-to-end benchmarks beside rsync (needs rsync; LOCKSTEP_BENCH_SCALE=small for a quick run)
	./scripts/bench-e2e.sh

fuzz: ## run every fuzz target for $(FUZZTIME)
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	  done; \
	done

lint: ## go vet and staticcheck (installed on demand)
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

# The .deb's version, in Debian syntax (a leading "v" is dropped): make deb VERSION=1.2.0
VERSION ?= 0.0.0~dev

deb: ## build dist/lockstep_<version>_<arch>.deb (set VERSION=x.y.z)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION:v%=%)" -o $(BIN) ./cmd/lockstep
	VERSION=$(VERSION) packaging/build-deb.sh dist

clean: ## remove build, package and benchmark output
	rm -rf bin dist bench.out
