# The two entry points of the README. Both install what they need first.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/labrun
REPORT ?= labrun-report
FLAVORS ?= mysql mariadb
# Scenarios at once in `make lab`: each waits on kernel timers, not on the
# CPU, and lives in its own namespaces.
JOBS ?= 4

.PHONY: lab test setup build images unit clean-runs

# The main job: the lab library, each scenario on the server it names
# (Oracle MySQL unless it says otherwise, process engine). Pass
# ARGS="--tag quick" to run only the quick scenarios. Scenarios tagged long
# (hours: the article's own keepalive) are left to `labrun plan`.
lab: setup build
	$(BIN) images build $(FLAVORS)
	$(BIN) run scenarios/ --skip-tag long -j $(JOBS) --report-dir $(REPORT) --junit $(REPORT)/junit.xml --html $(REPORT)/report.html $(ARGS)

# Every test tier: unit, namespace (root) and end to end (root and both
# server flavors, on the process and the container engine). -p 1: the
# end-to-end tier compares the whole host before and after each run, so no
# other package may create namespaces or servers meanwhile. setup.sh
# --docker installs docker.io and starts dockerd if it is not running; the
# container engine's images are imported from the root filesystems.
test: setup build
	scripts/setup.sh --docker
	$(BIN) images build $(FLAVORS) --docker
	LABRUN_BUILD_IMAGES=1 LABRUN_BIN=$(CURDIR)/$(BIN) $(GO) test -p 1 -count=1 -timeout 60m ./... 2>&1 | tee test.log; exit $${PIPESTATUS[0]}

setup:
	@scripts/setup.sh

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/labrun

# Unit tier only: no root, no server.
unit:
	$(GO) test -short ./...

clean-runs: build
	$(BIN) cleanup
