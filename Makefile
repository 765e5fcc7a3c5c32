# Two commands for a newcomer (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
CORE_SOURCES := $(wildcard service/l3tol1/core/*.pyx service/l3tol1/core/cy/*.pyx service/l3tol1/core/cy/*.pxd)

.PHONY: demo test lint bench sanitize image-check clean

# The tests' environment: the test extra, and the compiled core required (a C compiler is
# needed; see README), so that the tests never run on the fallback by accident. Rebuilt when
# the core's source changes.
$(STAMP): pyproject.toml setup.py $(CORE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	L3TOL1_REQUIRE_COMPILED=1 $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP)

# The demo's environment: the package and its dependencies only (no test extra), the compiled
# core when a C compiler builds it, else the pure-Python core (setup.py's optional extension);
# pip's own output is kept for a failure only. An environment set up for the tests serves too.
$(DEMO_STAMP): pyproject.toml setup.py $(CORE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet -e . > $(VENV)/demo-install.log 2>&1 || \
		{ cat $(VENV)/demo-install.log; echo "make demo: pip could not install l3tol1 (above)"; exit 1; }
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	@$(BIN)/python -c "import l3tol1.core as c; c.available() or print('make demo: no compiled core (it needs a C compiler): running on the pure-Python core, the same rows, slower')"
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

# The compiled core under AddressSanitizer and UBSan, with Cython's bounds checks on: built in
# a copy of the package (build/sanitize: the normal build is untouched) that the differential,
# fuzz and core unit tests then import. The interpreter is not sanitized: libasan is preloaded
# (first in the process, as ASan requires), Python objects are allocated by malloc so that ASan
# sees the bytes the core reads, and CPython's by-design leaks at exit are not reported; the
# report of an error goes straight to the terminal (pytest captures only Python's output).
SANITIZE := build/sanitize
sanitize: $(STAMP)
	rm -rf $(SANITIZE)
	mkdir -p $(SANITIZE)/service
	cp setup.py pyproject.toml MANIFEST.in README.md $(SANITIZE)/
	cp -R service/l3tol1 $(SANITIZE)/service/
	find $(SANITIZE)/service \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
	cd $(SANITIZE) && L3TOL1_SANITIZE=1 $(abspath $(BIN))/python setup.py -q build_ext --inplace
	LD_PRELOAD="$$(cc -print-file-name=libasan.so)" PYTHONMALLOC=malloc \
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	L3TOL1_SANITIZED_TREE=$(abspath $(SANITIZE))/service \
	$(BIN)/python -m pytest -p no:cacheprovider --capture=sys -o pythonpath="$(SANITIZE)/service ." \
		tests/unit/test_core_*.py tests/unit/test_parser_fuzz.py \
		tests/integration/test_core_differential.py tests/integration/test_pipeline_fuzz.py $(PYTEST_ARGS)

# The Dockerfile built with podman over local stand-ins for its Debian-based python images, then
# the image's entrypoint run on the reference data as the image's user: the output must be the
# golden file (scripts/image_check.sh says how). Opt-in, not part of `make test`: it needs root,
# podman and debootstrap (installed with apt-get when missing) and Debian's mirror and PyPI.
image-check:
	scripts/image_check.sh

clean:
	rm -rf $(VENV) out bench/.cache .pytest_cache .ruff_cache .hypothesis
