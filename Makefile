# Everyday commands. Each one sets up .venv first (scripts/setup.sh, a no-op once done).
PY := .venv/bin/python

.PHONY: setup quickstart test test-fast lint bench train-tiny clean

setup:
	bash scripts/setup.sh

quickstart: setup  ## evaluate the embedded model on the synthetic tasks (~2 min on 2 CPU cores)
	$(PY) -m dllm_lab.cli.eval experiment=quickstart

test: setup  ## the full test suite (what CI runs)
	$(PY) -m pytest

test-fast: setup  ## skip the slow end-to-end tests
	DLLM_LAB_SKIP_SLOW=1 $(PY) -m pytest

lint: setup
	$(PY) -m ruff check src tests benchmarks

bench: setup  ## training-throughput benchmark (Lightning vs plain PyTorch)
	$(PY) benchmarks/train_throughput.py

train-tiny: setup  ## retrain the embedded model from scratch (~80 min on 2 CPU cores)
	$(PY) -m dllm_lab.cli.train experiment=tiny_pretrain

clean:
	rm -rf logs outputs .pytest_cache
