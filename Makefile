# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SRC    := modelyard cli pipelines registry serving monitoring infra
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.modelyard/prefect

.PHONY: help install demo test lint bench clean lock

help:
	@echo "make demo   - set up .venv and run the main job (train -> register, ...)"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - benchmarks (figures go to benchmarks/README.md)"
	@echo "make prefect-up / prefect-deploy / prefect-down - local Prefect server, worker, deployments"

install: $(STAMP)

# Reinstalled only when the project metadata or the lock changes.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing into $(VENV) (first time: ~2 min)"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,scale,cloud]'
	@# PYTHONDONTWRITEBYTECODE is set on these machines: compile our modules once (STACK_NOTES).
	$(PY) -m compileall -q $(SRC) >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/modelyard demo

test: $(STAMP)
	@mkdir -p $(PREFECT_HOME)
	@bash scripts/system-deps.sh
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SRC) tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

lock:
	rm -rf /tmp/modelyard-lock && $(PYTHON) -m venv /tmp/modelyard-lock
	/tmp/modelyard-lock/bin/pip install --quiet '.[dev,scale,cloud]'
	{ echo "# Exact versions for every install (pip install -c constraints.txt ...)."; \
	  echo "# Regenerate from a fresh venv with: make lock"; \
	  /tmp/modelyard-lock/bin/pip freeze --exclude modelyard | sort -f; } > constraints.txt

clean:
	rm -rf .modelyard .pytest_cache

# Prefect deployments (README "Prefect deployments"): a local server, the process work pool and
# a worker; then every deployment in prefect.yaml. PREFECT_ENV=prod loads infra/prefect/env/prod.env.
PREFECT_ENV ?= dev
.PHONY: prefect-up prefect-deploy prefect-down

prefect-up: $(STAMP)
	bash scripts/prefect-up.sh

prefect-deploy: $(STAMP)
	@test -f infra/prefect/env/$(PREFECT_ENV).env || { echo "no infra/prefect/env/$(PREFECT_ENV).env"; exit 2; }
	set -a; . infra/prefect/env/$(PREFECT_ENV).env; set +a; \
	  $(VENV)/bin/prefect --no-prompt deploy --all

prefect-down:
	bash scripts/prefect-down.sh
