# The two commands of the README. `make run` sets up .venv with the core only (torch, Lightning, dsf-dist), enough
# for the embedded default; `make setup` and `make test` add every extra (deepspeed, ray, hf, loggers, dev).
# torch is installed first, from TORCH, so that pip does not pick a build for you:
#   CPU-only machine:  make run TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu'
#   NVIDIA GPUs:       make run TORCH='torch==2.13.0'   (PyPI's default build for Linux is the CUDA one)
# A changed TORCH replaces the torch in .venv on the next make; a changed pyproject.toml reinstalls the project.
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
EXTRAS := dev,deepspeed,ray,hf,loggers
TORCH_STAMP := $(VENV)/.torch-$(shell printf '%s' '$(TORCH)' | cksum | cut -d' ' -f1)

# The fast tier: the tests marked neither slow, distributed, slurm nor ray, plus the one end-to-end run (smoke).
FAST := (not slow and not distributed and not slurm and not ray) or smoke
# Two pytest-xdist workers; tests that share a loopback service or a module's fixture carry an xdist_group mark,
# and the session's shared runs are trained once for both (tests/conftest.py). WORKERS=0 runs in one process.
WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)
# DeepSpeed's built CPU op, one folder per venv (tests/conftest.py says why; .ci/run builds it there).
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions

.PHONY: run test test-fast setup

run: $(VENV)/.core
	$(VENV)/bin/dsf run

test: setup
	$(PY) -m pytest $(PARALLEL)

test-fast: setup
	$(PY) -m pytest $(PARALLEL) -m "$(FAST)"

setup: $(VENV)/.installed

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(TORCH_STAMP): | $(PY)
	rm -f $(VENV)/.torch-*
	$(PY) -m pip uninstall -q -y torch
	$(PY) -m pip install -q $(TORCH)
	touch $@

$(VENV)/.core: pyproject.toml $(TORCH_STAMP)
	$(PY) -m pip install -q -e .
	touch $@

# Straight to the extras, not the core first: one pip resolution instead of two (about 20 s less in a fresh clone).
$(VENV)/.installed: pyproject.toml $(TORCH_STAMP)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $(VENV)/.core $@
