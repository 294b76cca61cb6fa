PYTHON ?= python3
DATA_DIR ?= .syncstatus

.PHONY: install chromium run test bench audit

install:
	$(PYTHON) -m pip install --quiet -e '.[test]'

# Start the embedded service (Tansu + PostgreSQL) and show a demo session.
run: install
	syncstatus dev --demo --data-dir $(DATA_DIR)

# Debian's Chromium for the browser tests (without it they skip, or fail under CI=true); needs
# root or sudo rights.
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "no chromium: the browser tests will be skipped"

# Install and run the whole test suite (unit, integration, end-to-end, browser).
test: install chromium
	$(PYTHON) -m pytest

# The benchmarks and the full fault campaign whose figures the README quotes.
bench: install
	$(PYTHON) -m bench.engine
	$(PYTHON) -m bench.pipeline
	$(PYTHON) -m bench.faults

# Known vulnerabilities in the installed dependencies (pip-audit asks PyPI's advisory data, so it
# needs that network access; --strict fails when a package could not be checked).
audit: install
	$(PYTHON) -m pip install --quiet pip-audit
	$(PYTHON) -m pip_audit --strict --skip-editable
