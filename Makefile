# Two entry points on a fresh Linux machine with Python 3.11:
#   make demo   -- create/reuse .venv, install pinned deps + graphattn, train the demo model
#   make test   -- create/reuse .venv, install pinned deps + graphattn, run the test suite
PYTHON ?= python3
VENV   ?= .venv
LOCK   ?= requirements/lock-cpu.txt
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test install

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
