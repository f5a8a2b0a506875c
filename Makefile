# The two commands of the README. Both set up .venv first (once; again when pyproject.toml changes): the CPU build of torch before the
# project, so pip does not pull a multi-GB CUDA build. On a GPU machine: make TORCH='torch==2.13.0 --index-url ...'.
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

# The fast tier: the tests marked neither slow, distributed, slurm nor ray, plus the one end-to-end run (smoke).
FAST := (not slow and not distributed and not slurm and not ray) or smoke
# Two pytest-xdist workers; tests that share a loopback service or a module's fixture carry an xdist_group mark,
# and the session's shared runs are trained once for both (tests/conftest.py). WORKERS=0 runs in one process.
WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup)
# DeepSpeed's built CPU op, one folder per venv (tests/conftest.py says why; .ci/run builds it there).
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions

.PHONY: run test test-fast setup

run: setup
	$(VENV)/bin/dsf run

test: setup
	$(PY) -m pytest $(PARALLEL)

test-fast: setup
	$(PY) -m pytest $(PARALLEL) -m "$(FAST)"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,deepspeed,ray,hf,loggers]'
	touch $@
