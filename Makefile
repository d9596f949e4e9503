# GridHub: `make up` runs the whole hub on the embedded broker, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the tests drive for real: Prometheus (promtool on the alert rules, and a server scraping a running
# hub) and Chromium with its driver (the operations page). Installed once when missing (as root, or with sudo).
SYSTEM_PACKAGES := prometheus chromium chromium-driver
SYSTEM_STAMP := $(VENV)/.system-packages
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "GridHub needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SYSTEM_STAMP): $(STAMP)
	@if ! (command -v prometheus && command -v promtool && command -v chromium && command -v chromedriver) >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi
	touch $@

up: $(STAMP)  ## Run the hub (embedded Tansu unless KAFKA_BOOTSTRAP is set); Ctrl-C stops it.
	$(BIN)/gridhub up

test: $(STAMP) $(SYSTEM_STAMP)  ## Run the whole test suite on a real broker.
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, mypy --strict, and the generated JSON Schemas up to date.
	$(BIN)/ruff check .
	$(BIN)/mypy gridhub schemas services
	$(BIN)/gridhub schemas check

bench: $(STAMP)  ## Baseline, per-stage and end-to-end figures (takes a few minutes).
	$(BIN)/python bench/hub_bench.py

schemas: $(STAMP)  ## Regenerate schemas/json after changing a model.
	$(BIN)/gridhub schemas generate

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
