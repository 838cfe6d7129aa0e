# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv on first use. TORCH pins the torch build: the default is the CPU wheel
# (2.13.0); an unpinned torch would pull a multi-GB CUDA build. TORCH_INDEX picks another
# wheel index (e.g. a CUDA one).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin

.PHONY: demo test test-label-studio lint setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The tests decode Label Studio's RLE with its own converter (label_studio_sdk/converter/brush.py needs only
	# numpy and Pillow); the SDK's full install would pull pandas, nltk, OpenCV and more.
	$(BIN)/python -m pip install --quiet --no-deps "label-studio-sdk==2.1.2"
	touch $@

demo: setup
	$(BIN)/unetkit train

# pytest exits 5 when it collected nothing: that is a failure here, said out loud. compileall first: where
# PYTHONDONTWRITEBYTECODE is set, every process the tests start would compile the package again (~0.5 s each).
test: setup
	@$(BIN)/python -m compileall -q src
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# unetkit inside a real Label Studio 1.23 (issue 46): its own venv, made once under ~/.cache/unetkit (about
# 7 minutes), then about 4 minutes a run on 2 cores. CI runs it as its own step, bounded by .ci/run.
test-label-studio: setup
	@$(BIN)/python -m pytest -q -m labelstudio --label-studio -s

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

clean:
	rm -rf $(VENV) runs
