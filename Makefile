# Two commands do everything on a fresh machine (see README):
#   make sweep   # set up .venv if missing, then `runner sweep` on the embedded default
#   make test    # set up .venv if missing, then the whole test suite
#
# The environment is installed from the lock file with uv (seconds, not minutes) and reused
# until pyproject.toml or the lock changes. torch comes as a CPU wheel: from PIP_FIND_LINKS
# when that directory holds one, else from PyTorch's CPU index (uv's --torch-backend cpu).

PYTHON ?= python3
VENV ?= .venv
LOCK := cluster/requirements-cpu.lock
UV_VERSION := 0.13.9
ARGS ?=
PYTEST_ARGS ?=

ifneq ($(wildcard $(PIP_FIND_LINKS)/torch-2.13.0*),)
TORCH_SOURCE := --find-links $(PIP_FIND_LINKS)
else
TORCH_SOURCE := --torch-backend cpu
endif

.PHONY: sweep test bench validate lock clean-venv

sweep: $(VENV)/.installed
	$(VENV)/bin/runner sweep $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

validate: $(VENV)/.installed
	$(VENV)/bin/runner validate

bench: $(VENV)/.installed
	$(VENV)/bin/python -m runner.bench.generation $(ARGS)
	$(VENV)/bin/python -m runner.bench.switch
	$(VENV)/bin/python -m runner.bench.ray_data_llm
	$(VENV)/bin/python -m runner.bench.driver
	$(VENV)/bin/python -m runner.bench.perf

$(VENV)/.installed: pyproject.toml $(LOCK)
	@echo "setting up $(VENV) (once; reused until pyproject.toml or $(LOCK) changes)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync --python $(VENV)/bin/python --compile-bytecode $(TORCH_SOURCE) $(LOCK)
	$(VENV)/bin/uv pip install --python $(VENV)/bin/python --no-deps --compile-bytecode -e .
	touch $@

# Regenerate the lock after changing dependencies in pyproject.toml. vLLM's CPU build pulls CUDA
# builds of torchvision/torchaudio/torchcodec that break `import vllm`: they are excluded.
lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra cpu --extra test --extra bench \
	  --excludes cluster/excludes-cpu.txt $(TORCH_SOURCE) --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -o $(LOCK)

clean-venv:
	rm -rf $(VENV)
