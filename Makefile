# gradschool: `make lab` for students, `make test` for everyone, shortcuts for instructors.
# Everything runs in .venv, created on first use. Override the torch pin with e.g.
#   make lab TORCH="torch==2.5.1"      or a CUDA build via TORCH_INDEX=<pip index URL>

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
WORKERS ?= auto

BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gradschool-installed

.PHONY: lab test lint release release-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

lab: $(STAMP)  ## JupyterLab on course/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab --notebook-dir=course

test: $(STAMP)  ## the whole test suite (CI runs this)
	$(BIN)/ruff check .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n $(WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .

release: $(STAMP)  ## regenerate course/ from solutions/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/gradschool release

release-check: $(STAMP)  ## fail if course/ is out of date
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/gradschool release --check

clean:  ## remove the virtual environment and caches (never the gradebook)
	rm -rf $(VENV) .pytest_cache .ruff_cache
