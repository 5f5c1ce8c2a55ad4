"""The shipped embedded model: loads through transformers, is small, self-describing, and useful."""

from __future__ import annotations

import pytest
import yaml

from dllm_lab.evaluation.run import run_eval
from dllm_lab.models import load_model
from dllm_lab.paths import project_root

TINY = project_root() / "checkpoints" / "tiny-mdlm"


def test_shipped_model_is_small_and_self_describing():
    files = {p.name: p for p in TINY.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "config.yaml", "training_curve.csv"} <= set(files)
    assert sum(p.stat().st_size for p in TINY.rglob("*") if p.is_file()) <= 25 * 2**20
    run_config = yaml.safe_load(files["config.yaml"].read_text())
    assert run_config["task_name"] == "tiny_pretrain" and run_config["model"]["init"]["num_layers"] >= 1
    curve = files["training_curve.csv"].read_text().splitlines()
    assert curve[0].startswith("step") and len(curve) > 10


def test_shipped_model_loads_like_any_masked_diffusion_lm():
    lm = load_model(TINY)
    assert lm.family == "masked_lm"
    assert type(lm.model).__name__ == "ModernBertForMaskedLM"
    assert lm.tokenizer.convert_ids_to_tokens(lm.mask_token_id) == "<|mask|>"
    assert [lm.tokenizer.decode([i]) for i in lm.tokenizer("2024")["input_ids"]][-4:] == ["2", "0", "2", "4"]


@pytest.mark.slow
def test_shipped_model_solves_a_share_of_each_task(compose_cfg):
    """Greedy semi-AR on 48 held-out problems per task. The README's band (20-80%, on 500 problems) is
    checked loosely here so that float differences across machines cannot flip the test."""
    metrics = run_eval(compose_cfg("eval", ["data.num_eval=48", "data.eval_batch_size=48", "logger=none"]))
    for task in ("arith", "countdown", "sudoku4"):
        assert 0.08 <= metrics[f"eval/{task}/accuracy"] <= 0.92, (task, metrics[f"eval/{task}/accuracy"])
        assert metrics[f"eval/{task}/parse_rate"] >= 0.8
