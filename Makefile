# Everyday commands. Each one sets up .venv first (scripts/setup.sh, a no-op once done).
PY := .venv/bin/python

.PHONY: setup quickstart test test-fast lint bench train-tiny train-tiny-all train-tiny-llama rl-study rl-report ablation temporal early-exit \
	answer-likelihood posterior-sft-study posterior-sft-report server clean

setup:
	bash scripts/setup.sh

quickstart: setup  ## evaluate the embedded model on the synthetic tasks (~2 min on 2 CPU cores)
	$(PY) -m dllm_lab.cli.eval experiment=quickstart

server: setup  ## the team MLflow server on 127.0.0.1:5000 (basic auth; export DLLM_SERVER_ADMIN_PASSWORD first)
	$(PY) -m dllm_lab.cli.server --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

test: setup  ## the full test suite (what CI runs)
	$(PY) -m pytest

test-fast: setup  ## skip the slow end-to-end tests
	DLLM_LAB_SKIP_SLOW=1 $(PY) -m pytest

lint: setup
	$(PY) -m ruff check src tests benchmarks scripts

bench: setup  ## every benchmark table (training throughput, decoding, RL step)
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/decoding.py
	$(PY) benchmarks/rl_step.py

train-tiny: setup  ## stages 3a, 3b, 4 and 5 of the embedded model from the kept stage 2 (~75 min on 2 CPU cores)
	$(PY) -m dllm_lab.cli.train experiment=tiny_arith
	$(PY) -m dllm_lab.cli.train experiment=tiny_arith_context
	$(PY) -m dllm_lab.cli.train experiment=tiny_mix
	$(PY) -m dllm_lab.cli.train experiment=tiny_infill
	$(PY) -m dllm_lab.cli.train experiment=tiny_infill_80

train-tiny-all: setup  ## every stage from scratch (~4 h on 2 CPU cores)
	$(PY) -m dllm_lab.cli.train experiment=tiny_pretrain
	$(PY) -m dllm_lab.cli.train experiment=tiny_finetune
	$(MAKE) train-tiny

TWIN := $(CURDIR)/checkpoints/tiny-llama
train-tiny-llama: setup  ## the cache-capable twin's stages 3a to 5b from its kept stage 2 -> checkpoints/tiny-llama
	$(PY) -m dllm_lab.cli.train experiment=tiny_arith task_name=tiny_arith_llama \
		model.name_or_path=$(TWIN)-stage2 export_dir=$(TWIN)-stage3a
	$(PY) -m dllm_lab.cli.train experiment=tiny_arith_context task_name=tiny_arith_context_llama \
		model.name_or_path=$(TWIN)-stage3a export_dir=$(TWIN)-stage3
	$(PY) -m dllm_lab.cli.train experiment=tiny_mix task_name=tiny_mix_llama \
		model.name_or_path=$(TWIN)-stage3 export_dir=$(TWIN)-stage4
	$(PY) -m dllm_lab.cli.train experiment=tiny_infill task_name=tiny_infill_llama \
		model.name_or_path=$(TWIN)-stage4 export_dir=$(TWIN)-stage5
	$(PY) -m dllm_lab.cli.train experiment=tiny_infill_80 task_name=tiny_infill_80_llama \
		model.name_or_path=$(TWIN)-stage5 export_dir=$(TWIN)

ablation: setup  ## the decoding ablation -> experiments/decoding_ablation/
	$(PY) -m dllm_lab.cli.eval experiment=decoding_ablation

temporal: setup  ## the temporal-voting study -> experiments/temporal_voting/
	$(PY) -m dllm_lab.cli.eval experiment=temporal_voting

early-exit: setup  ## the early-exit study -> experiments/early_exit/
	$(PY) -m dllm_lab.cli.eval experiment=early_exit

answer-likelihood: setup  ## the answer-likelihood correlation study -> experiments/answer_likelihood/
	$(PY) scripts/answer_likelihood_study.py

posterior-sft-study: setup  ## the posterior SFT study: base model, 3 arms x 3 seeds, then its table
	$(PY) -m dllm_lab.cli.eval experiment=psft_base
	$(PY) -m dllm_lab.cli.train -m seed=0,1,2 experiment=psft_gold,psft_posterior,psft_unfiltered eval_before_fit=false
	$(PY) -m dllm_lab.cli.posterior_report

posterior-sft-report: setup  ## rebuild experiments/posterior_sft/results.md from the MLflow runs
	$(PY) -m dllm_lab.cli.posterior_report

rl-study: setup  ## the RL study: 4 arms x 3 seeds (Hydra multirun), then its table
	$(PY) -m dllm_lab.cli.eval experiment=rl_base
	$(PY) -m dllm_lab.cli.train -m experiment=rl_countdown,rl_tse,rl_tse_acc,rl_cj_grpo seed=0,1,2 eval_before_fit=false
	$(PY) -m dllm_lab.cli.rl_report

rl-report: setup  ## rebuild experiments/rl/results.md from the MLflow runs
	$(PY) -m dllm_lab.cli.rl_report

clean:
	rm -rf logs outputs .pytest_cache
