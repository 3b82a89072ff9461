# The two set-up commands of the README: `make run` and `make test`.
# Both create .venv, install the CPU build of PyTorch (constraints-cpu.txt) and ChatEdit with
# the `cpu` extra (onnxruntime), then run or test. Re-running skips the install unless
# pyproject.toml or the constraints changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.chatedit-installed

.PHONY: install run test bench-queue clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints-cpu.txt 'torch==2.13.0'
	$(PIP) install --quiet -c constraints-cpu.txt -e '.[cpu,dev]'
	touch $@

run: install
	$(BIN)/chatedit serve

test: install
	bash .ci/ensure-postgres
	bash .ci/ensure-chromium
	$(BIN)/python -m pytest

bench-queue: install
	$(PIP) install --quiet -c constraints-cpu.txt -e '.[cpu,dev,bench]'
	$(BIN)/python bench/job_queue.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
