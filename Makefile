# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Without Docker, scripts/infra.sh installs and starts Kafka, PostgreSQL and Redis on
# loopback; with Docker, `make up-docker` uses docker-compose.kafka.yml instead.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test up down status lint typecheck unit bench soak chaos clean up-docker lock

# The environment is exactly requirements.lock (every version pinned, every file's hash
# checked), then shopflow itself on top, editable; `make lock` writes the lock again from
# pyproject.toml.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		--quiet -o requirements.lock

# The servers, then Kafka's provisioning as its admin (topics, SCRAM users, ACLs): the
# service's own principal may not create topics.
up: $(STAMP)
	bash scripts/infra.sh up
	$(BIN)/shopflow topics create

down:
	bash scripts/infra.sh down

status:
	bash scripts/infra.sh status

# The same servers in containers (docker-compose.kafka.yml), with the same credentials.
up-docker: $(STAMP)
	bash scripts/infra.sh credentials
	docker compose --env-file $${SHOPFLOW_INFRA_DIR:-.infra}/docker.env -f docker-compose.kafka.yml up -d --wait
	$(BIN)/shopflow topics create

run: $(STAMP) up
	$(BIN)/shopflow serve

# lint-imports: the direction of imports (docs/design.md, Layout; pyproject.toml's
# tool.importlinter). shellcheck: the scripts. mkdocs: the documentation site, strictly.
lint: $(STAMP)
	$(BIN)/shellcheck -x scripts/*.sh scripts/infra/*.sh .ci/run
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(VENV)/site

typecheck: $(STAMP)
	$(BIN)/mypy

# The fast tier: no server, no hypothesis property (tests/conftest.py marks the tiers).
unit: $(STAMP)
	$(BIN)/pytest -q -m "unit and not property"

# SHOPFLOW_TEST_INFRA=testcontainers runs the integration tests against containers
# instead of the servers scripts/infra.sh starts.
test: $(STAMP) lint typecheck
	@if [ "$${SHOPFLOW_TEST_INFRA:-local}" = "local" ]; then \
		bash scripts/infra.sh up && $(BIN)/shopflow topics create; fi
	$(BIN)/pytest -q
	@# The benchmark suite with a few hundred commands each, so that it cannot rot (it
	@# runs against the servers of scripts/infra.sh).
	@if [ "$${SHOPFLOW_TEST_INFRA:-local}" = "local" ]; then \
		$(BIN)/python -m tests.bench.suite --smoke --out $(VENV)/bench-smoke; fi

# Every benchmark in one run: a table, and JSON under benchmarks/results/ (BENCH_OUT=...).
bench: $(STAMP) up
	$(BIN)/python -m tests.bench.suite --out $${BENCH_OUT:-benchmarks/results}

# Five minutes of steady load on one worker, watching its memory.
soak: $(STAMP) up
	$(BIN)/python -m tests.bench.soak

# Every fault of tests/chaos, the long runs (at least 20 worker kills; about 20 minutes):
# a table, and JSON under benchmarks/results/. Runs on servers of its own (.infra/chaos,
# .infra/chaos-cluster), stopped at the end.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --out $${BENCH_OUT:-benchmarks/results}

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
