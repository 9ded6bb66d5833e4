# rankloop: two commands are the contract.
#   make run   - set up .venv, prepare the embedded default model, start the app at http://127.0.0.1:7860
#   make test  - set up .venv with the test extra, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOME_DIR ?= runs
PORT ?= 7860

.PHONY: run test test-slow lint bench prepare clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

prepare: $(VENV)/.installed
	$(PY) -m models.embedded --home $(HOME_DIR)

run: prepare
	$(VENV)/bin/rankloop serve --home $(HOME_DIR) --port $(PORT)

test: prepare
	RANKLOOP_HOME=$(HOME_DIR) $(PY) -m pytest -q

test-slow: prepare
	RANKLOOP_HOME=$(HOME_DIR) $(PY) -m pytest -q -m slow

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
