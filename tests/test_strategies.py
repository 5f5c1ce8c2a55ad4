"""Strategies at start-up: every (trainer preset, algo) pair composes, and the pairs that cannot work, a GPU preset on a
machine without CUDA, and several nodes without a launcher are refused before a model is built, naming the fix."""

from __future__ import annotations

import pytest
import torch

from dllm_lab.errors import ConfigError
from dllm_lab.factory import build_job
from dllm_lab.paths import config_dir
from dllm_lab.training.trainer import LAUNCHER_ENV, TrainerSettings

TRAINERS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (config_dir() / "algo").glob("*.yaml") if p.stem != "grpo_base")
GRPO = [a for a in ALGOS if a not in ("mdlm_sft", "posterior_sft")]


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_strategy_and_algo_pair_works_or_is_refused_at_start(compose_cfg, trainer, algo):
    tasks = ["data.tasks=[arith]", "data.weights=[1.0]"] if algo == "posterior_sft" else []  # needs gold answers
    cfg = compose_cfg("train", [f"trainer={trainer}", f"algo={algo}", "logger=none", *tasks])
    refused = trainer == "deepspeed" and algo in GRPO  # DeepSpeed's engine owns the step; GRPO steps by hand
    if not refused:
        assert build_job(cfg, "train").trainer.strategy == cfg.trainer.strategy
        return
    with pytest.raises(ConfigError) as info:
        build_job(cfg, "train")
    message = str(info.value)
    assert message.startswith(f"trainer.strategy={cfg.trainer.strategy}")
    assert "trainer=fsdp" in message and "trainer=ddp" in message, "names the presets that work"


def test_fsdp_wraps_and_checkpoints_each_transformer_block(tiny_lm):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer
    from transformers.models.modernbert.modeling_modernbert import ModernBertEncoderLayer

    from dllm_lab.models import build_tiny_model
    from dllm_lab.training.sharding import block_classes, build_fsdp_strategy

    assert block_classes(tiny_lm) == {ModernBertEncoderLayer}
    llama = build_tiny_model(tiny_lm.tokenizer, hidden_size=32, num_layers=1, num_heads=2, arch="llama")
    assert block_classes(llama) == {LlamaDecoderLayer}
    strategy = build_fsdp_strategy(tiny_lm, activation_checkpointing=True)
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {ModernBertEncoderLayer}
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {ModernBertEncoderLayer}
    assert not build_fsdp_strategy(tiny_lm)._activation_checkpointing_kwargs
    with pytest.raises(ValueError, match="names no transformer block"):
        block_classes(torch.nn.Linear(2, 2))


def test_activation_checkpointing_needs_fsdp():
    with pytest.raises(ConfigError, match=r"trainer.activation_checkpointing=true .*\(trainer=fsdp\)"):
        TrainerSettings(strategy="ddp", activation_checkpointing=True).check_algo("sft")
    TrainerSettings(strategy="fsdp", activation_checkpointing=True).check_algo("grpo")


class _Root(torch.nn.Module):
    """Stands in for the FSDP root module, which reduces the norm over every rank's shard."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[float] = []

    def clip_grad_norm_(self, max_norm: float) -> None:
        self.calls.append(max_norm)


def test_clipping_goes_through_the_fsdp_root_and_falls_back_to_lightning_elsewhere(tiny_lm, monkeypatch):
    from types import SimpleNamespace

    from dllm_lab.training.mdlm import MDLMModule
    from dllm_lab.training.sharding import clip_grad_norm

    module = MDLMModule(tiny_lm)
    root = _Root()
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(strategy=SimpleNamespace(model=root)))
    module.configure_gradient_clipping(None, 0.5)  # what Lightning calls with trainer.gradient_clip_val
    assert root.calls == [0.5]
    seen = []
    monkeypatch.setattr(module, "clip_gradients", lambda opt, gradient_clip_val, gradient_clip_algorithm:
                        seen.append((gradient_clip_val, gradient_clip_algorithm)))
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(strategy=SimpleNamespace(model=module)))  # DDP, single
    clip_grad_norm(module, None, 0.2)
    assert seen == [(0.2, "norm")] and root.calls == [0.5]
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(strategy=type("DeepSpeedStrategy", (), {"model": root})()))
    clip_grad_norm(module, None, 0.3)  # DeepSpeed's engine clips with its config
    assert seen == [(0.2, "norm")] and root.calls == [0.5]


def test_the_frozen_reference_is_left_alone_off_fsdp(tiny_lm):
    from dllm_lab.training.sharding import shard_reference

    assert shard_reference(tiny_lm.model, SimpleStrategy()) is tiny_lm.model


class SimpleStrategy:
    """Any strategy but FSDP."""


def test_a_gpu_preset_on_a_machine_without_cuda_names_the_cpu_presets():
    with pytest.raises(ConfigError, match=r"no CUDA device.*use trainer=cpu .*trainer=ddp_cpu"):
        TrainerSettings(accelerator="gpu").check_machine(environ={}, cuda=False)
    TrainerSettings(accelerator="gpu").check_machine(environ={}, cuda=True)
    TrainerSettings(accelerator="cpu").check_machine(environ={}, cuda=False)


def test_several_nodes_need_a_launcher():
    settings = TrainerSettings(num_nodes=2)
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=2: .*torchrun --nnodes=2 .*srun"):
        settings.check_machine(environ={}, cuda=False)
    for name in LAUNCHER_ENV:
        settings.check_machine(environ={name: "1"}, cuda=False)
    TrainerSettings(num_nodes=1).check_machine(environ={}, cuda=False)


def test_the_gpu_check_runs_at_job_start_before_the_model(compose_cfg, monkeypatch):
    import torch

    import dllm_lab.runs.eval as eval_body
    from dllm_lab.runs import run_eval

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(eval_body, "build_model", lambda job: pytest.fail("the model was built"))
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu: this machine has no CUDA device"):
        run_eval(compose_cfg("eval", ["trainer=gpu", "logger=none"]))
