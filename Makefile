# crm_pipelines: `make run` sets everything up and runs the nightly job; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_PEOPLE ?= 5000
UI_PORT ?= 3000
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo run test ui bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,production]"
	touch $(STAMP)

install: $(STAMP)

# The bundled demo configuration (crm.yaml) reads generated demo sources under data/demo.
demo: $(STAMP)
ifeq ($(CRM_CONFIG),)
	$(BIN)/python -m crm_pipelines.demo --out data/demo --people $(DEMO_PEOPLE) --if-missing
endif

# A local instance (runs in .dagster_home) with telemetry off; deploy/dagster.yaml is the production one.
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p "$(DAGSTER_HOME)"
	printf 'telemetry:\n  enabled: false\n' > "$@"

run: demo $(DAGSTER_HOME)/dagster.yaml
	VIRTUAL_ENV="$(CURDIR)/$(VENV)" $(BIN)/dg launch --job crm_nightly

test: $(STAMP)
	$(BIN)/pytest

# dg dev reads workspace.yaml only when told (-w): pyproject.toml's [tool.dg] block would win otherwise.
ui: demo $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

bench: $(STAMP)
	for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check crm_pipelines tests benchmarks

clean:
	rm -rf data .dagster_home
