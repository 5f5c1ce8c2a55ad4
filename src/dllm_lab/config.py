"""Up-front validation of a composed config: every error names the override that fixes it."""

from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value that cannot work; the message names the override to change."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate_config(cfg: DictConfig, stage: str) -> None:
    """Check values Hydra's struct mode cannot (ranges, consistency) before anything is built."""
    from dllm_lab.data.collate import SFTCollator
    from dllm_lab.tasks import TASKS

    entry = cfg.get("entry", stage)
    _check(
        entry == stage,
        f"this config is for dllm-{entry} (python -m dllm_lab.cli.{entry}), not dllm-{stage}",
    )
    data = cfg.data
    for name in data.tasks:
        _check(name in TASKS, f"data.tasks: unknown task {name!r}; available: {sorted(TASKS)}")
    for name in data.eval_tasks or {}:
        _check(name in TASKS, f"data.eval_tasks: unknown task {name!r}; available: {sorted(TASKS)}")
    _check(len(data.weights) == len(data.tasks), "data.weights must have one weight per entry of data.tasks")
    for name, width in (data.get("reasoning_number_width") or {}).items():
        _check(name in data.tasks,
               f"data.reasoning_number_width.{name}: {name!r} is not in data.tasks={list(data.tasks)}")
        _check(isinstance(width, int) and width > 0,
               f"data.reasoning_number_width.{name}={width!r} must be a positive number of digits")
    for name, options in (data.get("task_options") or {}).items():
        _check(name in TASKS, f"data.task_options.{name}: unknown task; available: {sorted(TASKS)}")
        try:
            TASKS[name](**dict(options))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"data.task_options.{name}={dict(options)}: {err}") from None
    try:  # the collator's own checks; its messages start with the field name
        SFTCollator(0, 0, block_noise_prob=data.get("block_noise_prob", 0.0),
                    block_noise_length=data.get("block_noise_length", 16))
    except ValueError as err:
        raise ConfigError(f"data.{err}") from None
    _check(data.batch_size > 0, f"data.batch_size={data.batch_size} must be positive")
    _check(data.eval_batch_size > 0, f"data.eval_batch_size={data.eval_batch_size} must be positive")
    _check(data.num_eval > 0, f"data.num_eval={data.num_eval} must be positive")
    _check(data.prompt_style in ("d1", "compact"), f"data.prompt_style={data.prompt_style!r}: use d1 or compact")
    if stage == "train":
        algo, trainer = cfg.algo, cfg.trainer
        _check(algo.lr > 0, f"algo.lr={algo.lr} must be positive")
        _check(trainer.max_steps > 0, f"trainer.max_steps={trainer.max_steps} must be positive")
        _check(algo.warmup_steps >= 0, f"algo.warmup_steps={algo.warmup_steps} must be >= 0")
    if "decoder" in cfg:
        from dllm_lab.decoding.config import DecodeConfig

        DecodeConfig.from_dict(dict(cfg.decoder), prefix="decoder")
