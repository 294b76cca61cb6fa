PYTHON ?= python3
DATA_DIR ?= .syncstatus

.PHONY: install run test bench

install:
	$(PYTHON) -m pip install --quiet -e '.[test]'

# Start the embedded service (Tansu + PostgreSQL) and show a demo session.
run: install
	syncstatus dev --demo --data-dir $(DATA_DIR)

# Install and run the whole test suite (unit, integration, end-to-end).
test: install
	$(PYTHON) -m pytest

bench: install
	$(PYTHON) -m bench.engine
