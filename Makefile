# keepraft — run `make help` for the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := bin
# Debian packages the lab and the namespace tests need: binary:package.
DEPS := mariadbd:mariadb-server mariadb-install-db:mariadb-server keepalived:keepalived ip:iproute2 nft:nftables tcpdump:tcpdump debootstrap:debootstrap promtool:prometheus
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin

.PHONY: help build deps test test-unit test-integ fuzz bench campaign chaos lint demo demo-down clean install package man

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build keepraftd, raftctl and keepraft-lab into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/keepraftd ./cmd/keepraftd
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/raftctl ./cmd/raftctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/keepraft-lab ./cmd/keepraft-lab

deps: ## install the Debian packages the lab needs, when missing (needs root)
	@missing=""; for d in $(DEPS); do b=$${d%%:*}; p=$${d##*:}; \
	  command -v $$b >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install:$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "deps: all present"; fi
	@# MySQL 9.x for the MySQL tests and FLAVOR=mysql: a Debian sid root, made once, cached.
	@if [ "$$(id -u)" = 0 ]; then $(GO) run ./cmd/keepraft-lab mysql-root; fi

test: deps test-unit test-integ ## every test: unit (with -race) and the namespace/MariaDB/keepalived ones (needs root)

test-unit: ## unit tests with the race detector (no root needed)
	$(GO) test -race -count=1 ./...

test-integ: ## integration tests in network namespaces with real MariaDB and keepalived (root)
	@if [ "$$(id -u)" != 0 ]; then echo "make test-integ: needs root for network namespaces" >&2; exit 1; fi
	KEEPRAFT_INTEG=1 $(GO) test -count=1 -p 1 -timeout 45m ./...

FUZZTIME ?= 60s
fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	@set -e; for pkg in ./vrrp ./probe ./kaconf ./node; do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; done; done

bench: build ## failover timing benchmark against keepalived in the lab (root)
	KEEPRAFT_INTEG=1 KEEPRAFT_BENCH=1 $(GO) test -count=1 -p 1 -timeout 60m -run 'TestBench' -v ./e2e/ | tee bench.out

campaign: build ## one-fault-at-a-time campaign in the lab (root; KEEPRAFT_CAMPAIGN_ROUNDS, KEEPRAFT_CAMPAIGN_SEED)
	KEEPRAFT_INTEG=1 KEEPRAFT_CAMPAIGN=1 $(GO) test -count=1 -p 1 -timeout 120m -run 'TestCampaign' -v ./e2e/ | tee campaign.out

DURATION ?= 10m
MODE ?= async
SEED ?=
chaos: build ## overlapping faults under a live workload, judged by the checker (root; DURATION=10m SEED=n MODE=async|semisync)
	KEEPRAFT_INTEG=1 KEEPRAFT_CHAOS=1 KEEPRAFT_CHAOS_DURATION=$(DURATION) KEEPRAFT_CHAOS_MODE=$(MODE) KEEPRAFT_CHAOS_SEED=$(SEED) \
	  $(GO) test -count=1 -p 1 -timeout 180m -run 'TestChaos$$' -v ./e2e/ | tee chaos.out

lint: ## gofmt, go vet, go mod tidy -diff, staticcheck
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

FLAVOR ?= mariadb
demo: deps build ## start the three-node lab (FLAVOR=mariadb|mysql dual masters) and show a live failover
	FLAVOR=$(FLAVOR) ./scripts/demo.sh

demo-down: ## tear the demo lab down (processes by PID, namespaces)
	./$(BIN)/keepraft-lab down || $(GO) run ./cmd/keepraft-lab down

clean: ## remove build output
	rm -rf $(BIN) $(DIST) bench.out campaign.out chaos.out

# Installation paths (FHS). DESTDIR stages an install: make install DESTDIR=/tmp/root.
PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
UNITDIR ?= /lib/systemd/system
MAN := $(BIN)/man
DIST := dist
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
# Man pages and packages carry the last commit's date, not the build's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

man: build ## man pages generated from the commands into bin/man
	@rm -rf $(MAN)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ./packaging/gen-man.sh $(MAN) $(BIN)

install: build man ## install binaries, unit, man pages, example config, /var/lib/keepraft (PREFIX, DESTDIR)
	install -D -m 0755 $(BIN)/keepraftd $(DESTDIR)$(SBINDIR)/keepraftd
	install -D -m 0755 $(BIN)/raftctl $(DESTDIR)$(BINDIR)/raftctl
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/keepraft
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/keepraft/keepraft.yaml ]; then \
	  echo "install: keeping the existing $(DESTDIR)$(SYSCONFDIR)/keepraft/keepraft.yaml"; \
	else install -m 0640 examples/keepraft.yaml $(DESTDIR)$(SYSCONFDIR)/keepraft/keepraft.yaml; fi
	install -d -m 0700 $(DESTDIR)$(LOCALSTATEDIR)/lib/keepraft
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1
	sed -e 's|/usr/sbin/keepraftd|$(SBINDIR)/keepraftd|g' -e 's|/etc/keepraft/|$(SYSCONFDIR)/keepraft/|g' \
	  packaging/keepraftd.service > $(DESTDIR)$(UNITDIR)/keepraftd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/keepraftd.service
	install -m 0644 $(MAN)/*.1 $(DESTDIR)$(MANDIR)/man1/
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

package: ## build the .deb into dist/ with nfpm (static binaries, unit, man pages, example config)
	@rm -rf $(DIST)/stage $(DIST)/keepraft_*.deb && mkdir -p $(DIST)/stage/man
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(DIST)/stage/keepraftd ./cmd/keepraftd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS) -s -w" -o $(DIST)/stage/raftctl ./cmd/raftctl
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ./packaging/gen-man.sh $(DIST)/stage/man $(DIST)/stage
	gzip -9n $(DIST)/stage/man/*.1
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) GOARCH=$$($(GO) env GOARCH) \
	  KEEPRAFT_PKG_VERSION=$$(./packaging/version.sh) $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/
