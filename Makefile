# README's two quickstart commands. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test docs clean

demo: $(STAMP)  ## set up, then evaluate the bundled default model against its card
	$(BIN)/hanzoo eval checkerboard-hannet-20x30

test: $(STAMP)  ## set up, then run the test suite
	$(BIN)/python -m pytest

docs: $(STAMP)  ## regenerate README's model table from the registry
	$(BIN)/python -m hanzoo.docs

# torch is pinned and installed first: an unpinned resolve would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
