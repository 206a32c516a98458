# Set-up and the day-to-day commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-rest lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# an editable install compiles nothing, and PYTHONDONTWRITEBYTECODE may forbid writing it later:
	@# bytecode now, as a wheel install has it (a stale file is only recompiled in memory)
	$(BIN)/python -m compileall -q lossdiag
	touch $(STAMP)

demo: $(STAMP)  ## run lossdiag on the seed fixture, which holds the seed bug on purpose
	@$(BIN)/lossdiag check fixtures/seed_losses.py; status=$$?; \
	  if [ $$status -eq 1 ]; then echo "(exit status 1: the fixture holds a bug on purpose)"; else exit $$status; fi

test: $(STAMP)  ## the whole suite: lint, then the fast tier, then the rest
	$(MAKE) --no-print-directory lint test-fast test-rest

test-fast: $(STAMP)  ## the classifier, layouts, probes and traces in-process (TensorFlow included), and every test without TensorFlow: about a minute
	$(BIN)/python -m pytest -q -m "(not tf or inprocess) and not slow"

test-rest: $(STAMP)  ## what needs a process: CLI runs over the fixtures, isolation, pre-commit, model.fit
	$(BIN)/python -m pytest -q -m "tf and not inprocess or slow"

lint: $(STAMP)  ## ruff (complexity 15 included) and strict mypy
	$(BIN)/ruff check lossdiag tests bench
	$(BIN)/mypy

bench: $(STAMP)  ## wall time and peak memory against the `import tensorflow` floor
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
