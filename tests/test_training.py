"""MDLM loss, LR schedule, exact resume, self-describing exports, non-finite loss handling."""

from __future__ import annotations

import math

import mlflow
import pytest
import torch

from dllm_lab.models import load_model
from dllm_lab.runs import run_train
from dllm_lab.training.losses import mdlm_loss
from dllm_lab.training.mdlm import MDLMModule
from dllm_lab.training.optim import OptimSettings, warmup_cosine

TINY = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "data.batch_size=4",
    "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0", "eval_after_fit=false",
    "trainer.log_every_n_steps=1", "trainer.num_threads=1",
]


def test_mdlm_loss_matches_hand_computation():
    logits = torch.zeros(2, 3, 4)
    logits[0, 1] = torch.tensor([2.0, 0.0, 0.0, 0.0])
    labels = torch.tensor([[0, 0, 3], [1, 2, 3]])
    loss_mask = torch.tensor([[False, True, True], [False, False, True]])
    p_mask = torch.tensor([0.5, 0.25])
    lengths = torch.tensor([2, 2])
    ce_peaked = -math.log(math.exp(2) / (math.exp(2) + 3))  # label 0 at the peaked position
    ce_uniform = math.log(4)
    expected = ((ce_peaked + ce_uniform) / 0.5 / 2 + ce_uniform / 0.25 / 2) / 2
    assert mdlm_loss(logits, labels, loss_mask, p_mask, lengths).item() == pytest.approx(expected)
    # nothing masked: zero loss that still has a graph
    zero = mdlm_loss(logits.requires_grad_(), labels, torch.zeros_like(loss_mask), p_mask, lengths)
    assert zero.item() == 0.0 and zero.requires_grad
    # per-token p (block noise) weights each token by its own masking probability
    per_token = torch.tensor([[1.0, 0.5, 0.5], [1.0, 1.0, 0.25]])
    assert mdlm_loss(logits, labels, loss_mask, per_token, lengths).item() == pytest.approx(expected)
    per_token[0, 2] = 1.0
    expected_mixed = ((ce_peaked / 0.5 + ce_uniform / 1.0) / 2 + ce_uniform / 0.25 / 2) / 2
    assert mdlm_loss(logits, labels, loss_mask, per_token, lengths).item() == pytest.approx(expected_mixed)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(55, 10, 100, min_ratio=0.0) == pytest.approx(0.5)


def _weights(module_or_dir) -> dict[str, torch.Tensor]:
    lm = load_model(module_or_dir)
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.slow
def test_resume_is_exact_and_continues_the_same_mlflow_run(compose_cfg, tmp_path):
    common = [*TINY, "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2", "trainer.val_check_interval=2"]
    straight = compose_cfg("train", [*common, f"export_dir={tmp_path / 'straight'}", "run_name=job"])
    straight.paths.output_dir = str(tmp_path / "job")
    run_train(straight)
    # A job killed after step 2 leaves exactly this checkpoint behind; resume it with the same config.
    ckpt = next((tmp_path / "job" / "checkpoints").glob("*step=2.ckpt"))
    resumed = compose_cfg("train", [*common, f"ckpt_path='{ckpt}'", f"export_dir={tmp_path / 'resumed'}"])
    resumed.paths.output_dir = str(tmp_path / "resumed_job")
    run_train(resumed)

    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)

    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name("dllm-lab/train").experiment_id)
    assert len(runs) == 1, "resuming must continue the run stored in the checkpoint, not open a new one"
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    by_step: dict[int, list[float]] = {}
    for m in history:
        by_step.setdefault(m.step, []).append(m.value)
    # steps 2 and 3 ran twice (before the "kill" and after resuming, on the same data: the weights above
    # match); the resumed run skips the points it already has, so each step is logged once
    assert sorted(by_step) == [0, 1, 2, 3] and all(len(v) == 1 for v in by_step.values()), by_step
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resume_count"] == "1"
    assert run.data.tags["resumed_1_from_step"] == "2"


@pytest.mark.slow
def test_a_lightning_checkpoint_exports_to_a_loadable_model_dir(compose_cfg, tmp_path):
    from dllm_lab.runs import export_checkpoint

    cfg = compose_cfg("train", [*TINY, "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2",
                                "trainer.val_check_interval=2", f"export_dir={tmp_path / 'direct'}", "logger=none"])
    cfg.paths.output_dir = str(tmp_path / "job")
    run_train(cfg)
    out = export_checkpoint(tmp_path / "job" / "checkpoints" / "last.ckpt", tmp_path / "from_ckpt")
    direct, exported = _weights(tmp_path / "direct"), _weights(out)
    for k in direct:  # the same weights as the run's own export at its last step
        torch.testing.assert_close(exported[k], direct[k], rtol=0, atol=0, msg=k)
    config_yaml = (out / "config.yaml").read_text()
    assert "prompt_style: compact" in config_yaml and "exported from last.ckpt at step 2" in config_yaml
    assert load_model(out).prompt_style == "compact"


@pytest.mark.slow
def test_export_is_self_describing(compose_cfg, tmp_path):
    out = tmp_path / "export"
    run_train(compose_cfg("train", [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2",
                                    f"export_dir={out}"]))
    assert {"config.json", "model.safetensors", "tokenizer.json", "config.yaml", "training_curve.csv"} <= {
        p.name for p in out.iterdir()}
    assert "max_steps: 2" in (out / "config.yaml").read_text()
    lm = load_model(out)
    assert lm.family == "masked_lm" and lm.mask_token_id == lm.tokenizer.mask_token_id


def test_non_finite_loss_stops_with_a_clear_message(tiny_lm):
    module = MDLMModule(tiny_lm)
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[1, 2, 3]]),
             "loss_mask": torch.tensor([[False, True, True]]), "p_mask": torch.tensor([0.0]),
             "response_lengths": torch.tensor([2])}
    module._loss = lambda b: torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite"):
        module.training_step(batch, 0)


def test_checkpoint_hparams_are_plain_containers(tiny_lm):
    module = MDLMModule(tiny_lm, OptimSettings(), run_config={"a": {"b": 1}})
    assert type(module.hparams["run_config"]) is dict
    assert "lm" not in module.hparams


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"lr": 0}, r"algo\.lr"), ({"weight_decay": -1}, r"algo\.weight_decay"), ({"betas": (0.9, 1.0)}, r"algo\.betas"),
     ({"warmup_steps": -1}, r"algo\.warmup_steps"), ({"total_steps": 0}, r"trainer\.max_steps"),
     ({"min_lr_ratio": 2}, r"algo\.min_lr_ratio")],
)
def test_optimizer_settings_name_the_override_to_fix(settings, message):
    from dllm_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        OptimSettings(**settings)


def test_one_optimizer_builder_for_sft_and_grpo(tiny_lm):
    from dllm_lab.training.optim import build_optimizer
    from dllm_lab.training.trainer import TrainerSettings

    sft = build_optimizer(tiny_lm.named_parameters(), OptimSettings(weight_decay=0.1))["optimizer"]
    assert [g["weight_decay"] for g in sft.param_groups] == [0.1, 0.0]  # norms and biases are exempt
    grpo = build_optimizer(tiny_lm.named_parameters(), OptimSettings(decay_norms_and_biases=True))["optimizer"]
    assert len(grpo.param_groups) == 1 and sum(len(g["params"]) for g in sft.param_groups) == len(
        grpo.param_groups[0]["params"])
    from dllm_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"trainer\.max_steps=0"):
        TrainerSettings(max_steps=0)
