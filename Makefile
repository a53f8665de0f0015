# Newcomer entry points: `make demo` and `make test` (both create .venv when it is missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pinned torch wheels are what this project is tested with; override for another CUDA/CPU build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.toonlab-installed

.PHONY: demo test install bench clean-venv app

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m toonlab.demo

app: $(STAMP)
	$(PY) -m toonlab.cli app

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/ops.py

clean-venv:
	rm -rf $(VENV)
