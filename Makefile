# Every target a newcomer or CI needs. `make demo` and `make test` install what
# they need (venv, Python packages, etcd-server/redis-server) on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

CHAOS := pool-crash pool-hang total-outage decline-storm flap etcd-down redis-down gateway-crash iso8583
CHAOS += redis-lost-replies short-deadlines replays late-approvals client-cancels reversals
CHAOS += redis-master-loss money long-outage
CHAOS_TARGETS := $(addprefix chaos-,$(CHAOS))

.PHONY: help venv sysdeps proto certs lint package-check deploy-check deploy-rules deploy-units test test-fast demo demo-top bench bench-tls bench-iso8583 bench-failover bench-standin bench-standin-compare bench-standin-trips bench-balance bench-settle bench-tracing bench-metrics bench-policy bench-cluster bench-scale chaos $(CHAOS_TARGETS) clean

help:
	@echo "make demo   - replay of an issuer outage on a local topology"
	@echo "make demo-top - authgw top on the running demo's gateway (another terminal or tmux pane)"
	@echo "make test   - lint, then the whole test suite (real etcd/redis/processes)"
	@echo "make proto  - regenerate authgw/v1 from proto/"
	@echo "make lint   - ruff + mypy (strict)"
	@echo "make deploy-check - promtool on the alert rules, systemd-analyze on the units (deploy/)"
	@echo "make bench  - authgw against direct calls, nginx and HAProxy (bench/results.json)"
	@echo "make bench-tls - what mutual TLS costs (gateway and direct, plaintext vs TLS)"
	@echo "make bench-iso8583 - the ISO 8583 path (acquirer and issuer) beside the gRPC path, 500 and 1,000/s"
	@echo "make bench-scale - the capacity model's numbers: gateway processes, stand-in on Redis and Cluster, settlement, etcd"
	@echo "make bench-failover / bench-standin / bench-policy / bench-settle / bench-tracing - the other benchmarks"
	@echo "make chaos  - every chaos experiment (or one: make chaos-pool-hang, ...)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,sim]'
	# the harness (chaos/) is not part of the product's wheel: the checkout goes on the venv's path
	$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "authgw-checkout.pth").write_text("$(CURDIR)\n")'
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	./scripts/ensure-system-deps.sh

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I proto \
		--python_out=. --pyi_out=. --grpc_python_out=. \
		proto/authgw/v1/*.proto

# A development CA and every certificate of a local fleet (kept if present; see authgw/security/devca.py).
certs: $(STAMP)
	$(PY) -m authgw.security.devca --out certs/dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# `pip install .` in a fresh venv: a working `authgw serve`, without the harness or its dependencies
package-check: $(STAMP)
	$(PY) scripts/check_package.py

# What operators deploy beside authgw (deploy/): the alert rules and their unit tests.
# promtool comes from Debian's prometheus package; the script has no promtool case (it would
# run apt-get for it every time), hence the test -x guard.
PROMTOOL := /usr/bin/promtool

deploy-rules:
	test -x $(PROMTOOL) || ./scripts/ensure-system-deps.sh prometheus
	$(PROMTOOL) check rules deploy/prometheus/authgw-alerts.yml
	$(PROMTOOL) test rules deploy/prometheus/authgw-alerts.test.yml

# The systemd units. `systemd-analyze verify` refuses a unit whose ExecStart binary is missing,
# and /opt/authgw/bin/authgw exists only on a production host: it checks copies in build/systemd
# whose ExecStart is this checkout's venv entry point. verify only warns about an unknown key
# (exit 0), so any message it prints fails the target. `security --threshold` takes tenths:
# 11 is the exposure level 1.1 the units reach (docs/runbook.md says what the rest would cost).
UNITS := $(wildcard deploy/systemd/*.service)
UNIT_EXPOSURE := 11

deploy-units: $(STAMP)
	command -v systemd-analyze >/dev/null || ./scripts/ensure-system-deps.sh systemd
	test -f /usr/include/x86_64-linux-gnu/asm/unistd_64.h || ./scripts/ensure-system-deps.sh linux-libc-dev
	rm -rf build/systemd && mkdir -p build/systemd
	for unit in $(UNITS); do \
		sed 's#/opt/authgw/bin/authgw#$(CURDIR)/$(BIN)/authgw#' "$$unit" > "build/systemd/$$(basename "$$unit")"; \
	done
	out=$$(systemd-analyze verify build/systemd/*.service 2>&1); echo "$$out"; test -z "$$out"
	systemd-analyze security --offline=true --threshold=$(UNIT_EXPOSURE) --no-pager $(UNITS) > build/systemd/security.txt; \
		status=$$?; grep -E '✗|Overall' build/systemd/security.txt; exit $$status

deploy-check: deploy-rules deploy-units

test: lint package-check sysdeps deploy-check
	$(BIN)/pytest -q -n 2 --dist loadfile

demo: $(STAMP) sysdeps
	$(PY) -m chaos.demo $(DEMO_ARGS)

# `authgw top` on the gateway of a running `make demo` (another terminal or tmux pane): waits for it
demo-top: $(STAMP)
	@echo "waiting for make demo's gateway (chaos/reports/demo-top.sh)..."
	@while [ ! -f chaos/reports/demo-top.sh ]; do sleep 0.5; done; sh chaos/reports/demo-top.sh

bench: $(STAMP) sysdeps
	./scripts/ensure-system-deps.sh nghttp2-client nginx haproxy
	$(PY) -m chaos.bench
	$(PY) -m chaos.bench_tls
	$(PY) -m chaos.bench_iso8583_both

# What mutual TLS costs: gateway and direct calls, plaintext and TLS, interleaved rounds.
bench-tls: $(STAMP) sysdeps
	$(PY) -m chaos.bench_tls

bench-iso8583: $(STAMP) sysdeps
	$(PY) -m chaos.bench_iso8583_both

bench-failover: $(STAMP) sysdeps
	$(PY) -m chaos.bench_failover

bench-standin: $(STAMP) sysdeps
	$(PY) -m chaos.bench_standin

# card limits only against the risk checks (exposure budget, velocity windows): 5 interleaved rounds at 500/s
bench-standin-compare: $(STAMP) sysdeps
	$(PY) -m chaos.bench_standin --compare 5 --rates 500

bench-standin-trips: $(STAMP) sysdeps
	$(PY) -m chaos.bench_standin_trips

bench-policy: $(STAMP) sysdeps
	$(PY) -m chaos.bench_policy

bench-cluster: $(STAMP) sysdeps
	$(PY) -m chaos.bench_cluster

# What this machine allows, for the README's capacity model (bench/scale.json, < 10 min)
bench-scale: $(STAMP) sysdeps
	./scripts/ensure-system-deps.sh nghttp2-client
	$(PY) -m chaos.bench_scale

# What keeping issuer-reported balances costs on the issuer path (interleaved rounds, off / on).
bench-balance: $(STAMP) sysdeps
	$(PY) -m chaos.bench_balance

bench-settle: $(STAMP) sysdeps
	$(PY) -m chaos.bench_settle

bench-tracing: $(STAMP)
	./scripts/ensure-system-deps.sh nghttp2-client
	$(PY) -m chaos.bench_tracing --rounds 5 --requests 10000

# What the operator metrics cost: per request (requests counter) and per scrape (collection)
bench-metrics: $(STAMP)
	$(PY) -m chaos.bench_metrics

# One experiment per target; `make chaos` runs them all and ends with one summary table.
$(CHAOS_TARGETS): chaos-%: $(STAMP) sysdeps
	$(PY) -m chaos.run $*

chaos: $(STAMP) sysdeps
	$(PY) -m chaos.run all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache chaos/reports bench/results.json
