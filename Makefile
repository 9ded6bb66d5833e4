# rankloop: two commands are the contract.
#   make run   - set up .venv, prepare the embedded default model, start the app at http://127.0.0.1:7860
#   make test  - set up .venv with the test extra, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOME_DIR ?= runs
PORT ?= 7860
# processes `make test` spreads the suite over (pytest-xdist); 0: one process
TEST_WORKERS ?= 2

LOCK := requirements.lock

.PHONY: run test test-slow lint lock bench prepare clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -c $(LOCK)
	touch $@

prepare: $(VENV)/.installed
	$(PY) -m models.embedded --home $(HOME_DIR)

run: prepare
	$(VENV)/bin/rankloop serve --home $(HOME_DIR) --port $(PORT)

test: prepare
	RANKLOOP_HOME=$(HOME_DIR) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-slow: prepare
	RANKLOOP_HOME=$(HOME_DIR) $(PY) -m pytest -q -m slow

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Refresh the lock: pyproject.toml's ranges into a fresh venv, the test suite on it, then the versions it passed with.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[test]'
	.venv-lock/bin/python -m models.embedded --home $(HOME_DIR)
	RANKLOOP_HOME=$(HOME_DIR) .venv-lock/bin/python -m pytest -q
	(head -n 2 $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable) > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
