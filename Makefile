# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned stack (torch 2.13.0 first, so pip never pulls a CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export DS_ACCELERATOR := cpu
export TOKENIZERS_PARALLELISM := false
# One DeepSpeed op cache per user, not per run: its JIT builds take minutes.
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/kotune/torch_extensions

.PHONY: install demo test test-slow clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q pip==26.0.1
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/kotune demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf runs
