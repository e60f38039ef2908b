# README's two quickstart commands. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo test docs bench clean

demo: $(VENV)/.demo  ## set up, then check the bundled default model: parity in every runtime, latency against FCNet
	$(BIN)/hanzoo verify checkerboard-hannet-20x30

test: $(VENV)/.test  ## set up (with ONNX Runtime, TensorFlow and LiteRT), then run the test suite
	$(BIN)/python -m pytest

docs: $(VENV)/.test  ## regenerate README's model table, docs/export.md, docs/mobile.md and the model cards
	$(BIN)/python -m hanzoo.docs

bench: $(VENV)/.test  ## re-measure docs/benchmarks.md (+ .json, .png) on this machine
	$(BIN)/hanzoo bench --all --report docs

# torch is pinned and installed first: an unpinned resolve would pull a multi-GB CUDA build.
$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[onnx,litert]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
