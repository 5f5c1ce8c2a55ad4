"""The shipped embedded model: loads through transformers, is small, self-describing, and useful."""

from __future__ import annotations

import pytest
import yaml

from conftest import compose_config
from dllm_lab.evaluation.run import run_eval
from dllm_lab.models import load_model
from dllm_lab.paths import project_root

TINY = project_root() / "checkpoints" / "tiny-mdlm"


def test_shipped_model_is_small_and_self_describing():
    files = {p.name: p for p in TINY.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "config.yaml", "training_curve.csv"} <= set(files)
    assert sum(p.stat().st_size for p in TINY.rglob("*") if p.is_file()) <= 25 * 2**20
    run_config = yaml.safe_load(files["config.yaml"].read_text())
    # stage 2 (tiny_finetune) continues stage 1 (tiny_pretrain, from scratch)
    assert run_config["task_name"] == "tiny_finetune"
    assert run_config["model"]["name_or_path"].endswith("checkpoints/tiny-mdlm-stage1")
    curve = files["training_curve.csv"].read_text().splitlines()
    assert curve[0].startswith("step") and len(curve) > 10


def test_shipped_model_loads_like_any_masked_diffusion_lm():
    lm = load_model(TINY)
    assert lm.family == "masked_lm"
    assert type(lm.model).__name__ == "ModernBertForMaskedLM"
    assert lm.tokenizer.convert_ids_to_tokens(lm.mask_token_id) == "<|mask|>"
    assert [lm.tokenizer.decode([i]) for i in lm.tokenizer("2024")["input_ids"]][-4:] == ["2", "0", "2", "4"]


@pytest.fixture(scope="module")
def shipped_accuracy(tmp_path_factory):
    """Greedy semi-AR on 48 held-out problems per task (the README's numbers use 500)."""
    cfg = compose_config("eval", ["data.num_eval=48", "data.eval_batch_size=48", "logger=none",
                                  "temporal.enabled=false"], tmp_path_factory.mktemp("band"))
    return run_eval(cfg)


@pytest.mark.slow
def test_shipped_model_answers_in_format_and_solves_sudoku(shipped_accuracy):
    for task in ("arith", "countdown", "sudoku4"):
        assert shipped_accuracy[f"eval/{task}/parse_rate"] >= 0.7, task
    assert shipped_accuracy["eval/sudoku4/accuracy"] >= 0.8


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 2 is open: the shipped model is below the 20% band on arith and "
                   "countdown and above it on sudoku4 (README, 'The embedded tiny model')")
@pytest.mark.parametrize("task", ["arith", "countdown", "sudoku4"])
def test_shipped_model_is_in_the_accuracy_band(shipped_accuracy, task):
    """The issue's band, 20-80%, on the 48 problems of the fixture."""
    assert 0.2 <= shipped_accuracy[f"eval/{task}/accuracy"] <= 0.8
