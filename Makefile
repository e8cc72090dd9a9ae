# `make run`: the built-in demo on mock hardware. `make test`: the whole suite.
# Both set everything up first (system packages, virtualenv, Python packages).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped
TEST_STAMP := $(VENV)/.bootstrapped-test
PYTEST_WORKERS ?= auto

.PHONY: run test bench setup clean

run: $(STAMP)
	$(VENV)/bin/loaxa run

test: $(TEST_STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

bench: $(TEST_STAMP)
	$(PY) bench/run.py

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	sh scripts/bootstrap.sh $(VENV)
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml scripts/bootstrap.sh
	sh scripts/bootstrap.sh $(VENV) test
	touch $(STAMP) $(TEST_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
