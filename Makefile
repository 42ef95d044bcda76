# The two commands of the README: `make demo` and `make test`. Each sets up `.venv` when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup demo test test-fast lint format bench clean

$(STAMP): pyproject.toml web/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# Pinned on purpose: an unpinned torch pulls a multi-GB CUDA build; this is the CPU wheel.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[train,space,offline,test,library]"
	# The browser page's pinned packages (onnxruntime-web, the tokenizer): web/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix web --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: web/node_modules not installed, the browser page test will be skipped"; fi
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) train.py demo --output_dir outputs/demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not browser" tests

# ruff (settings in pyproject.toml: line length 119): the style check CI runs before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run.py --quick

clean:
	rm -rf outputs build *.egg-info
