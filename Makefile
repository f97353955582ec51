# Set-up and entry points. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed pinned *before* anything that could pull a (multi-GB CUDA) build. GPU users: see README.
TORCH_SPEC ?= torch==2.13.0
# Debian packages the test suite uses: Chromium (real-browser viewer test), libusb (needed by open3d's import).
SYSTEM_PACKAGES ?= chromium libusb-1.0-0

.PHONY: demo gallery test install install-extras system-deps clean-demo

$(BIN)/.neural3d-installed: pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

# the viewer (viser) and export (open3d-cpu, scikit-image) extras, pinned by constraints.txt; torch stays pinned
# + Triton (no deps: it never pulls torch), so the fused hash-grid kernel is tested in its CPU interpreter
$(BIN)/.neural3d-extras: $(BIN)/.neural3d-installed
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" -c constraints.txt -e ".[test,viewer,export]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt triton
	touch $@

install: $(BIN)/.neural3d-installed

install-extras: $(BIN)/.neural3d-extras

# apt-get the missing system packages when running as root on Debian/Ubuntu; otherwise say what is missing
# (the tests that need them skip with that reason).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	{ ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; } || missing="$$missing libusb-1.0-0"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "note: missing system packages:$$missing (apt-get install them as root); the tests needing them will skip"; \
	fi

demo: install
	$(BIN)/neural3d demo

# the README gallery (docs/gallery/): reuses runs/demo (or runs `neural3d demo`), renders, evaluates, exports a mesh,
# trains a small cross-scene GNT (runs/gallery-gnt, reused when present) and renders an unseen scene
gallery: install-extras
	$(BIN)/python scripts/make_gallery.py

# lint and format check first (ruff is pinned in constraints.txt, installed by the test extra); any finding fails
test: install-extras system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf data/demo runs/demo
