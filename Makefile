# The course's commands. Each one sets up the local virtual environment first
# (created on first use, reinstalled when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
# The browser `make test-lab` drives: a command name or a path.
CHROMIUM ?= chromium

# Quiet TensorFlow's C++ start-up logs.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help setup course student test test-portability test-lab lint lab clean

help:
	@echo "make course  run every notebook headless: executed copies, HTML pages, summary.md and"
	@echo "             index.html go to build/ (ARGS=\"01 -p seed 3\" or ARGS=\"--variants FILE\")"
	@echo "make student student copies without solutions go to build/student/"
	@echo "make test    lint, unit tests, papermill tests and nbval on every notebook"
	@echo "make test-portability  rerun every notebook under another seed: what nbval compares"
	@echo "             must survive it, as it must survive another CPU (about 5 minutes)"
	@echo "make test-lab  browser test: JupyterLab in headless Chromium runs a notebook with"
	@echo "             Run All Cells and saves it (installs Playwright, and Chromium with apt-get)"
	@echo "make lab     open JupyterLab on notebooks/ with the course's environment"
	@echo "make clean   remove build/ (keeps the virtual environment)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable ".[test]"
	@touch $@

$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --editable ".[test,lab]"
	@touch $@

course: $(STAMP)
	$(BIN)/python -m helpers run --output-dir build $(ARGS)

student: $(STAMP)
	$(BIN)/python -m helpers student --output-dir build/student $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check helpers tests notebooks
	$(BIN)/ruff format --check helpers tests notebooks

# Test workers (pytest-xdist). `--dist loadscope` keeps each notebook's cells,
# and each test module, on one worker, in order (as nbval requires).
TEST_JOBS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadscope tests notebooks \
	  --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg $(ARGS)

# Each notebook under another seed, compared by nbval with its stored outputs
# (tests/portability): what survives that survives another CPU.
test-portability: $(STAMP)
	COURSE_TEST_PORTABILITY=1 $(BIN)/python -m pytest -n $(TEST_JOBS) tests/portability $(ARGS)

# Playwright drives the system's Chromium (no `playwright install`): Debian's
# package, installed when missing if we are root, or CHROMIUM=/path/to/chrome.
test-lab: $(LAB_STAMP)
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "make test-lab needs Chromium: apt-get install chromium, or CHROMIUM=/path/to/chrome"; \
	    exit 1; \
	  fi; }
	COURSE_TEST_LAB=1 CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest tests/lab $(ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf build
