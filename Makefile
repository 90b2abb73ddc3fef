# The README's two commands: `make demo` and `make test`. Each creates .venv and installs from this repo.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned here (not in pyproject.toml, which accepts torch>=2.4) so a fresh machine takes the
# wheels already on its disk; override on other machines, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP = $(VENV)/bin/python -m pip
DEMO_DIR ?= runs/demo
SLADKIT = $(VENV)/bin/sladkit
# ModelOpt (`--quantizer modelopt`) pins onnx~=1.21 and, on x86 Linux, onnxruntime-gpu, which would replace the
# dev venv's onnx and clash with its onnxruntime. Its test runs in a second venv on top of the dev venv: its own
# ModelOpt and onnx 1.21 first on the path, then (a .pth) the dev venv's packages, including its CPU
# onnxruntime, which ModelOpt's ONNX PTQ runs on. No onnxruntime-gpu, no cupy (CUDA only).
MODELOPT_VENV ?= $(VENV)/modelopt
MODELOPT_SPEC ?= nvidia-modelopt==0.47.0 onnx~=1.21.0 "onnx-graphsurgeon>=0.6.1" onnxconverter-common~=1.16.0 \
	cppimport lief ninja "nvidia-ml-py>=12" "omegaconf>=2.3.0" antlr4-python3-runtime==4.9.* "pulp<4.0"

.PHONY: demo test test-modelopt lint clean

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

# Installed before the .pth is written, so pip sees only this venv (and never touches the dev venv's onnx).
$(MODELOPT_VENV)/.modelopt: $(VENV)/.dev
	rm -rf $(MODELOPT_VENV)
	$(PYTHON) -m venv $(MODELOPT_VENV)
	$(MODELOPT_VENV)/bin/python -m pip install -q --no-deps $(MODELOPT_SPEC)
	echo "import site; site.addsitedir('$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')')" \
		> "$$($(MODELOPT_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_sladkit_dev.pth"
	touch $@

# The ModelOpt export test, which may not skip there (SLADKIT_REQUIRE_MODELOPT=1).
test-modelopt: $(MODELOPT_VENV)/.modelopt
	SLADKIT_REQUIRE_MODELOPT=1 $(MODELOPT_VENV)/bin/python -m pytest -q tests/test_modelopt.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check sladkit tests benchmarks tools
	$(VENV)/bin/ruff format --check sladkit tests benchmarks tools

test: lint
	bash cpp/install_deps.sh
	$(VENV)/bin/python -m pytest -q
	$(MAKE) test-modelopt

clean:
	rm -rf $(VENV) $(MODELOPT_VENV) runs .pytest_cache
