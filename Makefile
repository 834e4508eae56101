# Two entry points on a fresh Linux machine with Python 3.11:
#   make demo   -- create/reuse .venv, install pinned deps + graphattn, train the demo model
#   make test   -- create/reuse .venv, install pinned deps + graphattn, run the test suite
#   make docs   -- build the documentation site into docs/_build/html (offline; warnings are errors)
#   make figures / make tables -- regenerate the figures and results tables from benchmarks/results/
PYTHON ?= python3
VENV   ?= .venv
LOCK   ?= requirements/lock-cpu.txt
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test install docs figures tables

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	OUTDATED_IGNORE=1 $(VENV)/bin/graphattn demo

test: $(STAMP)
	OUTDATED_IGNORE=1 $(PY) -m pytest -q tests

docs: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m sphinx -b html -W --keep-going -n -q docs docs/_build/html

figures: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.figures

tables: $(STAMP)
	$(PY) -m benchmarks.tables
