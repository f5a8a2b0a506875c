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

# pip byte-compiles what it installs one file at a time; compileall then does it on every core (about 15 s less in a
# fresh clone). Some packages ship files that are not Python (templates, test data): pip skips them, and so does
# this, which is why its exit status is not checked.
PIP_INSTALL := $(PY) -m pip install -q --no-compile
COMPILE := $(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true

$(TORCH_STAMP): | $(PY)
	rm -f $(VENV)/.torch-*
	$(PY) -m pip uninstall -q -y torch
	$(PIP_INSTALL) $(TORCH)
	touch $@

$(VENV)/.core: pyproject.toml $(TORCH_STAMP)
	$(PIP_INSTALL) -e .
	$(COMPILE)
	touch $@

# Straight to the extras, not the core first: one pip resolution instead of two (about 20 s less in a fresh clone).
$(VENV)/.installed: pyproject.toml $(TORCH_STAMP)
	$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	$(COMPILE)
	touch $(VENV)/.core $@
