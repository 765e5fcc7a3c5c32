# Two commands for a newcomer (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

# The compiled core is built here too (a C compiler is needed; see README): required, so that
# the demo and the tests never run on the fallback by accident. Rebuilt when its source changes.
$(STAMP): pyproject.toml setup.py $(wildcard service/l3tol1/core/*.pyx service/l3tol1/core/cy/*.pyx service/l3tol1/core/cy/*.pxd)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	L3TOL1_REQUIRE_COMPILED=1 $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(BIN)/l3tol1 -i data/l3_data_v3.1.csv -o out/l1_data.csv --no-follow --log-format console
	@if cmp -s out/l1_data.csv data/expected_l1_data_v3.1.csv; then \
		echo "MATCH: out/l1_data.csv is byte-identical to data/expected_l1_data_v3.1.csv"; \
	else \
		echo "MISMATCH: out/l1_data.csv differs from data/expected_l1_data_v3.1.csv"; exit 1; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check $(wildcard service tests bench)
	$(BIN)/ruff format --check $(wildcard service tests bench)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out bench/.cache .pytest_cache .ruff_cache .hypothesis
