# README's two quickstart commands. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check
# Where plain `pip install torch==2.13.0` would take the multi-GB CUDA build (Linux x86-64 without a
# local CPU wheel), point pip at PyTorch's CPU index: make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
# torch's float32 results depend on the vector kernels it picks for the CPU (AVX-512, AVX2, SSE). The
# golden tests run a second time with torch held to its scalar/SSE4.2 kernels, so that a figure only one
# CPU gives fails on every machine, not just on the next user's; that pass runs the subset that
# tests/golden.py states, and says why it is enough.
OLD_CPU := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
# Two pytest workers, one thread each (tests/conftest.py); a group of tests that share an expensive
# fixture (a browser, a built wheel, the CIFAR-10 training features) stays on one worker.
XDIST := -n 2 --dist loadgroup
# ONNX Runtime's C API header, for the C example (examples/c): extracted from Debian 13's
# libonnxruntime-dev package (not installed), checked by sha256. The library is the onnxruntime wheel's.
ORT_DEB := libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb
ORT_DEB_SHA256 := 14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08
ORT_HEADER := examples/c/include/onnxruntime_c_api.h

.PHONY: demo test docs bench quantization site verify-arm verify-mcu chromium fetch-ort-header clean

demo: $(VENV)/.demo  ## set up, then check the bundled default model: parity in every runtime, latency against FCNet
	$(BIN)/hanzoo verify checkerboard-hannet-20x30 --latency

test: $(VENV)/.test node_modules/.installed chromium $(ORT_HEADER)  ## set up (with ONNX Runtime, TensorFlow, LiteRT, onnxruntime-web and Chromium), lint, type-check, run the test suite, then its golden tests on a simulated older CPU
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(XDIST) --durations=10
	$(OLD_CPU) $(BIN)/python -m pytest $(XDIST) -m golden --golden-subset --durations=10

docs: $(VENV)/.test  ## regenerate README's model table, docs/export.md, docs/mobile.md and the model cards
	$(BIN)/python -m hanzoo.reports.docs

bench: $(VENV)/.test  ## re-measure docs/benchmarks.md (+ .json, .png) on this machine
	$(BIN)/hanzoo bench --all --report docs

quantization: $(VENV)/.test  ## re-measure docs/quantization.md (+ .json) and ship the fp16/int8 variants that win
	$(BIN)/python -m hanzoo.reports.quantization
	$(BIN)/python -m hanzoo.publishing.ship
	$(BIN)/python -m hanzoo.reports.docs

site: $(VENV)/.test node_modules/.installed chromium  ## build site/ (hanzoo site) and its demo screenshots in docs/
	$(BIN)/hanzoo site --out site --screenshots docs

verify-arm: $(VENV)/.test $(ORT_HEADER)  ## run every shipped export (and examples/c) on emulated aarch64 (qemu-user, Cortex-A76): docs/aarch64.json, docs/mobile.md
	@command -v mmdebstrap >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y -q mmdebstrap >/dev/null
	@command -v aarch64-linux-gnu-gcc >/dev/null || [ "$$(id -u)" != 0 ] \
		|| apt-get install -y -q gcc-aarch64-linux-gnu >/dev/null
	$(BIN)/hanzoo verify --all --arch aarch64 --report docs/aarch64.json
	$(BIN)/python -m hanzoo.reports.docs

# Debian's bare-metal toolchain, newlib (rdimon: semihosting) and qemu-system-arm, installed where this runs
# as root and they are missing (apt-get update first on a machine that has never fetched its package lists)
MCU_DEBS := gcc-arm-none-eabi binutils-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
verify-mcu: $(VENV)/.test  ## run every shipped MLP's C export bare metal on emulated Cortex-M4F and Cortex-M0+ (qemu-system-arm): docs/mcu.json, docs/mcu.md, README
	@{ command -v arm-none-eabi-gcc && command -v qemu-system-arm \
		&& [ -f "$$(arm-none-eabi-gcc -print-file-name=rdimon.specs)" ]; } >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
		|| apt-get install -y -q $(MCU_DEBS) >/dev/null \
		|| (apt-get update -q >/dev/null && apt-get install -y -q $(MCU_DEBS) >/dev/null)
	$(BIN)/hanzoo verify --all --arch cortex-m --report docs/mcu.json
	$(BIN)/python -m hanzoo.reports.docs


$(ORT_HEADER):
	@command -v curl >/dev/null && command -v dpkg-deb >/dev/null \
		|| { echo "no curl or dpkg-deb: the C example's tests will skip (see examples/c/README.md)"; exit 0; } \
		&& $(MAKE) --no-print-directory fetch-ort-header

fetch-ort-header:
	mkdir -p .cache $(dir $(ORT_HEADER))
	curl -fsSL --retry 3 -o .cache/$(ORT_DEB).part http://deb.debian.org/debian/pool/main/o/onnxruntime/$(ORT_DEB)
	echo "$(ORT_DEB_SHA256)  .cache/$(ORT_DEB).part" | sha256sum -c --quiet
	dpkg-deb --fsys-tarfile .cache/$(ORT_DEB).part | tar -xO ./usr/include/onnxruntime/onnxruntime_c_api.h \
		> $(ORT_HEADER).part
	mv $(ORT_HEADER).part $(ORT_HEADER) && rm .cache/$(ORT_DEB).part

# The browser tests' parts: onnxruntime-web from the lock file, and Debian's Chromium where this runs as
# root (as CI does); elsewhere those tests skip with one line saying how to get it.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || apt-get install -y -q chromium >/dev/null \
		|| (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)

# torch is pinned and installed first: an unpinned resolve would pull a multi-GB CUDA build.
$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[onnx,litert]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache node_modules site .cache examples/c/include
