"""Strategies at start-up: every (trainer preset, algo) pair composes, and the pairs that cannot work, a GPU preset on a
machine without CUDA, and several nodes without a launcher are refused before a model is built, naming the fix."""

from __future__ import annotations

import pytest

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
    sharded = trainer in ("fsdp", "deepspeed")
    refused = sharded and (algo in GRPO or (trainer == "fsdp" and cfg.trainer.gradient_clip_val))
    if not refused:
        assert build_job(cfg, "train").trainer.strategy == cfg.trainer.strategy
        return
    with pytest.raises(ConfigError) as info:
        build_job(cfg, "train")
    message = str(info.value)
    assert message.startswith(f"trainer.strategy={cfg.trainer.strategy}")
    assert "trainer=ddp" in message, "names a preset that works"


def test_fsdp_sft_runs_once_norm_clipping_is_off(compose_cfg):
    cfg = compose_cfg("train", ["trainer=fsdp", "algo=mdlm_sft", "trainer.gradient_clip_val=null", "logger=none"])
    assert build_job(cfg, "train").trainer.sharding == "fsdp"


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
