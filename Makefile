# The two commands a newcomer needs (see README):
#   make run   - set up .venv and run the main job (`layerlab compare` on built-in MNIST-1D)
#   make test  - set up .venv and run the test suite
# The dev install pins torch==2.13.0: the library itself accepts torch>=2.1,<3, but an unpinned
# torch would pull a multi-GB CUDA build. triton (0.9 GB: local_conv's CUDA kernels, the extra
# layerlab[gpu]) is not part of the setup: `make triton` adds it, pinned the same way, and then the
# tests also run those kernels in the Triton interpreter (CI does: .ci/run); without it they skip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
TRITON_PIN := triton==3.8.0
# the venv's bin goes first on PATH: torch's C++ extension build (layerlab's local_conv kernels,
# compiled on first use) looks for ninja there
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: setup triton run test bench clean

$(BIN)/layerlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)" -e ".[dev]"
	touch $(BIN)/layerlab

setup: $(BIN)/layerlab

triton: setup
	$(BIN)/pip install -q "$(TRITON_PIN)"

run: setup
	$(RUN) $(BIN)/layerlab compare --out runs/compare

test: setup
	$(RUN) $(BIN)/python -m pytest -n 2 -q

bench: setup
	$(RUN) $(BIN)/python benchmarks/local.py

clean:
	rm -rf $(VENV) runs .pytest_cache
