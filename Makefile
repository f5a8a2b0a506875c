# The two commands of the README. Both set up .venv first (once; again when pyproject.toml changes): the CPU build of torch before the
# project, so pip does not pull a multi-GB CUDA build. On a GPU machine: make TORCH='torch==2.13.0 --index-url ...'.
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: run test setup

run: setup
	$(VENV)/bin/dsf run

test: setup
	$(PY) -m pytest

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,deepspeed,ray,hf,loggers]'
	touch $@
