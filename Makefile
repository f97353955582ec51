# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed pinned *before* anything that could pull a (multi-GB CUDA) build. GPU users: see README.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install clean-demo

$(BIN)/.neural3d-installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/.neural3d-installed

demo: install
	$(BIN)/neural3d demo

test: install
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf data/demo runs/demo
