# The two commands of the README. Both (re)build the project virtualenv at .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Dagster's local instance for the demo and `make dev`, kept inside the checkout.
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: demo test dev bench venv clean postgres chromium litellm

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Dagster's default local instance, created once (never overwritten) from
# deploy/dagster.local.yaml: no telemetry, and the "cloudzero" pool limited to one step.
$(DAGSTER_HOME)/dagster.yaml: | deploy/dagster.local.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m demo

# PostgreSQL server binaries for the tests, which start a throwaway server of their own.
postgres:
	sh scripts/ensure-postgres.sh

# Debian's Chromium and ChromeDriver for the UI tests (tests/ui/), which drive a headless
# browser through Selenium against a real `dagster dev`.
chromium:
	sh scripts/ensure-chromium.sh

# The LiteLLM proxies the tests run (tests/litellm_install.py), each in its own virtualenv
# under ~/.cache/litellm-spend (or $SPEND_TEST_CACHE), built once; the tests would build them
# on first use too, but here a failed install stops before the suite starts.
litellm: $(STAMP)
	$(BIN)/python -m tests.litellm_install

test: $(STAMP) postgres chromium litellm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# Recorded benchmarks; run on an otherwise idle machine.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.receiver_throughput --s3 --output benchmarks/results/receiver_throughput.md
	$(BIN)/python -m benchmarks.spend_logs_pull --output benchmarks/results/spend_logs_pull.md
	$(BIN)/python -m benchmarks.reconcile_query --output benchmarks/results/reconcile_query.md
	$(BIN)/python -m benchmarks.cloudzero_submit --output benchmarks/results/cloudzero_submit.md
	$(BIN)/python -m benchmarks.cloudzero_submit --latency-ms 0 --output benchmarks/results/cloudzero_submit_loopback.md
	$(BIN)/python -m benchmarks.busy_hour --s3 --output benchmarks/results/busy_hour.md
	$(BIN)/python -m benchmarks.month_backfill --work-dir .bench-month --output benchmarks/results/month_backfill.md
	$(BIN)/python -m benchmarks.month_backfill --instance postgres --work-dir .bench-month --output benchmarks/results/month_backfill_postgres.md
	rm -rf .bench-month

clean:
	rm -rf $(VENV) data .dagster
