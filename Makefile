PYTHON ?= python3
DATA_DIR ?= .syncstatus
VENV := .venv
BIN := $(VENV)/bin
# The locks are made by uv; this pins the uv that makes them (only `make lock` installs it).
UV_VERSION := 0.13.9
LOCK := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command "make lock"

.PHONY: install install-dev chromium run test bench audit lock

# A project virtual environment with the machine's Python: nothing is ever written into the
# system Python, and nothing a machine already had is used.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The locked set, hashes checked, then the project itself without resolving anything. The stamp
# files make a second `make` cheap and a changed lock reinstall.
$(VENV)/.dev-installed: requirements/build.txt requirements/runtime.txt requirements/dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.txt -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.dev-installed requirements/test.txt
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.txt -r requirements/test.txt
	touch $@

install-dev: $(VENV)/.dev-installed
install: $(VENV)/.test-installed

# Start the embedded service (Tansu + PostgreSQL) and show a demo session.
run: install-dev
	$(BIN)/syncstatus dev --demo --data-dir $(DATA_DIR)

# Debian's Chromium for the browser tests (without it they skip, or fail under CI=true); needs
# root or sudo rights.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "no chromium: the browser tests will be skipped"

# Install and run the whole test suite (unit, integration, end-to-end, browser).
test: install chromium
	$(BIN)/python -m pytest

# The benchmarks and the full fault campaign whose figures the README quotes.
bench: install
	$(BIN)/python -m bench.engine --rounds 3
	$(BIN)/python -m bench.pipeline --runs 5
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.soak

# Re-resolve every lock from pyproject.toml: runtime (the Docker image), dev (the embedded
# servers), test, and build (setuptools for the project itself). Each later lock is
# constrained by the earlier one, so a package has one version everywhere. To upgrade one
# dependency only: make lock UPGRADE="--upgrade-package NAME".
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(LOCK) $(UPGRADE) -o requirements/runtime.txt
	$(LOCK) $(UPGRADE) --extra dev -c requirements/runtime.txt -o requirements/dev.txt
	$(LOCK) $(UPGRADE) --extra test -c requirements/dev.txt -o requirements/test.txt
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))" \
		| $(BIN)/uv pip compile - --universal --python-version 3.11 --generate-hashes --quiet \
			--custom-compile-command "make lock" $(UPGRADE) -c requirements/test.txt -o requirements/build.txt

# Known vulnerabilities in the locked dependencies (pip-audit asks PyPI's advisory data, so it
# needs that network access; --strict fails when a package could not be checked).
audit: install
	$(BIN)/python -m pip install --quiet pip-audit
	$(BIN)/python -m pip_audit --strict --require-hashes -r requirements/test.txt
