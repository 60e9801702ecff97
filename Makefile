# gradschool: `make lab` for students, `make test` for everyone, shortcuts for instructors.
# Everything runs in .venv, created on first use. Override the torch pin with e.g.
#   make lab TORCH="torch==2.5.1"      or another build via TORCH_INDEX=<pip index URL>
#   (TORCH_INDEX= with nothing: PyPI's own build, which on Linux is the CUDA one, several GB)

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# On Linux, PyPI's torch is the CUDA build with its nvidia-* wheels (several GB): take the CPU
# build (a few hundred MB) from PyTorch's index unless told otherwise. Elsewhere PyPI's is CPU.
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu)
WORKERS ?= auto

BIN    := $(VENV)/bin
# Jupyter refuses to run as root (containers, CI boxes) unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
STAMP  := $(VENV)/.gradschool-installed

.PHONY: lab formgrader test lint release release-check clean sandbox browser report-screenshot \
	gpu-check

# torch alone from TORCH_INDEX, an extra index (PyPI and local mirrors stay usable: on Linux
# `torch==2.13.0` then picks 2.13.0+cpu); its dependencies come with the course's, in the next step.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps "$(TORCH)" \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[instructor,cluster,dev]"
	touch $@

lab: $(STAMP)  ## JupyterLab on course/ (students)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab --notebook-dir=course $(ROOT_FLAG)

# nbgrader's formgrader links to solutions/ and course/: it needs the repository root as the
# server's root; its exchange folder (unused without JupyterHub) must exist to show no warning.
formgrader: $(STAMP)  ## JupyterLab on the repository root, for nbgrader's formgrader (instructors)
	mkdir -p autograder/exchange
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab --notebook-dir=. $(ROOT_FLAG)

# One thread per process: two pytest workers each running kernels must not oversubscribe 2 cores.
RUN := PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# Grading runs each submission under bubblewrap (see autograder/README.md, "The sandbox").
# Installed here when missing on Debian/Ubuntu as root (CI boxes, containers); else say how.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap (the grading sandbox)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else \
	    echo "make: grading needs bubblewrap (bwrap): apt-get install bubblewrap, dnf install" \
	      "bubblewrap or pacman -S bubblewrap" >&2; exit 1; \
	  fi; }

# The browser tests (tests/test_report_browser.py) drive Debian's Chromium with Selenium.
# Installed here when missing on Debian as root; elsewhere those tests skip, saying how to install.
# (Ubuntu's chromium package is a snap stub that does not run in containers: not installed.)
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	     && grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then \
	    echo "installing chromium and chromium-driver (the browser tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver; \
	  else \
	    echo "make: no chromium + chromedriver: the browser tests will be skipped" \
	      "(Debian: apt-get install chromium chromium-driver)" >&2; \
	  fi; }

test: $(STAMP) sandbox browser  ## the whole test suite (CI runs this)
	$(BIN)/ruff check .
	$(RUN) $(BIN)/python -m pytest -n $(WORKERS) --dist loadscope tests
	$(RUN) $(BIN)/gradschool gpu-check || [ $$? -eq 3 ]  # 3: no CUDA here, skipped

# On a machine with a CUDA GPU: run, grade and time the whole course there and write a report to
# benchmarks/results/ (autograder/README.md, "Checking the course on a GPU"). Exit status 3, with
# one line, where there is no CUDA. GPU_CHECK_ARGS: e.g. --quick, --only 03-optimizers, --out DIR.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP) sandbox
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/gradschool gpu-check $(GPU_CHECK_ARGS)

# The instructor guide's picture of the class report; tests/test_report.py fails when it is stale.
report-screenshot: $(STAMP) browser  ## remake autograder/report-screenshot.png
	$(RUN) $(BIN)/python tests/report_screenshot.py

lint: $(STAMP)
	$(BIN)/ruff check .

release: $(STAMP)  ## regenerate course/ from solutions/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/gradschool release

release-check: $(STAMP)  ## fail if course/ is out of date
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/gradschool release --check

clean:  ## remove the virtual environment and caches (never the gradebook)
	rm -rf $(VENV) .pytest_cache .ruff_cache
