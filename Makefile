# The two commands of the README: `make run` (demo) and `make test` (all tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= var/demo
PORT ?= 8080
# the product packages every gate looks at (mypy's own list is in pyproject.toml)
CHECKED := storage mappers conformance fhir_gateway

.PHONY: run test lint demo deps system-deps bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	@echo "== installing fhir-gateway and its dependencies into $(VENV) (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@

deps: $(BIN)/.installed

# Debian packages the browser tests and benchmarks need (root on CI; skipped when present).
system-deps:
	bash scripts/system-deps.sh

# The embedded demo hospital: generated once into $(DEMO) (outside git), then reused.
demo: deps
	PORT=$(PORT) bash scripts/demo.sh $(DEMO)

run: demo
	$(BIN)/fhir-gateway serve --config $(DEMO)/gateway.toml --host 127.0.0.1 --port $(PORT) --no-auth

test: lint system-deps
	$(BIN)/python -m pytest -q

# The gates `make test` runs first (each stops the build on a finding): ruff; mypy as configured
# in pyproject.toml (strict for storage, mappers, conformance; default for fhir_gateway); radon:
# no product function above cyclomatic-complexity grade D (`radon cc -n E` must print nothing).
lint: deps
	$(BIN)/ruff check $(CHECKED) tests bench
	$(BIN)/mypy
	@out="$$($(BIN)/radon cc -n E -s $(CHECKED))"; \
	if [ -n "$$out" ]; then echo "radon: functions above grade D (split them):"; echo "$$out"; exit 1; fi; \
	echo "radon: no function above grade D in $(CHECKED)"

bench: deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var build *.egg-info
