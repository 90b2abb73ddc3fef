# The README's two commands: `make demo` and `make test`. Each creates .venv and installs from this repo.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned here (not in pyproject.toml, which accepts torch>=2.4) so a fresh machine takes the
# wheels already on its disk; override on other machines, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP = $(VENV)/bin/python -m pip
DEMO_DIR ?= runs/demo
SLADKIT = $(VENV)/bin/sladkit

.PHONY: demo test lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_SPEC)
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.dev
	$(SLADKIT) train --out $(DEMO_DIR)/train --overwrite
	$(SLADKIT) export $(DEMO_DIR)/train --target jetson-orin --out $(DEMO_DIR)/jetson-orin --overwrite
	$(SLADKIT) export $(DEMO_DIR)/train --target cpu --out $(DEMO_DIR)/cpu --overwrite
	$(SLADKIT) export $(DEMO_DIR)/train --target cpu --model teacher --precision fp32 --out $(DEMO_DIR)/teacher-cpu --overwrite
	$(SLADKIT) info $(DEMO_DIR)/jetson-orin
	$(SLADKIT) profile $(DEMO_DIR)/teacher-cpu $(DEMO_DIR)/cpu --batch 1,8 --data synthetic \
		--json $(DEMO_DIR)/profile.json --plot $(DEMO_DIR)/profile.png

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check sladkit tests benchmarks tools
	$(VENV)/bin/ruff format --check sladkit tests benchmarks tools

test: lint
	bash cpp/install_deps.sh
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
