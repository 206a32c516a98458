# Set-up and the day-to-day commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run lossdiag on the seed fixture, which holds the seed bug on purpose
	@$(BIN)/lossdiag check fixtures/seed_losses.py; status=$$?; \
	  if [ $$status -eq 1 ]; then echo "(exit status 1: the fixture holds a bug on purpose)"; else exit $$status; fi

test: $(STAMP)  ## the whole suite
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  ## everything that does not need TensorFlow
	$(BIN)/python -m pytest -q -m "not tf and not slow"

bench: $(STAMP)  ## wall time and peak memory against the `import tensorflow` floor
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
