# genforce-papers: every target installs what it needs into .venv first (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

PAPER ?=
PRESET ?= tiny
DATA ?=
GPUS ?= 0
ARGS ?=

.PHONY: install test lint reproduce gpu-check bench clean-venv

install: $(STAMP)

# Reinstalls only when the package definition changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

reproduce: $(STAMP)
	@test -n "$(PAPER)" || { echo "usage: make reproduce PAPER=<pkg> [PRESET=<row>] [DATA=<path>] [GPUS=<n>]"; exit 2; }
	$(PY) -m common.reproduce --paper "$(PAPER)" --preset "$(PRESET)" --data "$(DATA)" --gpus "$(GPUS)" $(ARGS)

clean-venv:
	rm -rf $(VENV)

# CUDA ops vs reference on a CUDA machine, then the benchmark tables (ops, one paper256 G+D iteration).
gpu-check: $(STAMP)
	$(PY) -m common.ops.gpu_check
	$(PY) -m common.ops.bench
	$(PY) -m common.stylegan2.bench --device cuda --configs paper256 --batch 8

# CPU benchmarks: ops reference path, StyleGAN2 iteration, Inception extraction (pytorch-fid comparison when
# PYTORCH_FID=<folder where pytorch-fid is installed with pip --target>).
PYTORCH_FID ?=
bench: $(STAMP)
	$(PY) -m common.ops.bench
	$(PY) -m common.stylegan2.bench
	$(PY) -m common.metrics.bench $(if $(PYTORCH_FID),--pytorch-fid $(PYTORCH_FID))
