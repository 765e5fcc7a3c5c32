# Two commands for a newcomer (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
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
