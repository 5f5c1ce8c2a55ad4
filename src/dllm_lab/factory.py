"""Builds the objects a run needs from its config: the one place that reads config groups.

Entry points call these, then pass typed objects down; no class below takes "the config".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from dllm_lab.data import TaskDataModule
from dllm_lab.models import DiffusionLM, build_tiny_model, build_tokenizer, load_model
from dllm_lab.models.tiny import task_corpus
from dllm_lab.tracking import log_config, make_mlflow_logger

log = logging.getLogger(__name__)


def build_model(model_cfg: DictConfig, data_cfg: DictConfig | None = None, seed: int = 0) -> DiffusionLM:
    """Load ``model.name_or_path``, or build a fresh tiny model when ``model.init`` is set."""
    init = model_cfg.get("init")
    if init:
        tasks = list(data_cfg.tasks) if data_cfg is not None else ["arith", "countdown", "sudoku4"]
        style = data_cfg.prompt_style if data_cfg is not None else "compact"
        tokenizer = build_tokenizer(task_corpus(tasks, init.corpus_examples, style), init.vocab_size)
        model = build_tiny_model(
            tokenizer,
            hidden_size=init.hidden_size,
            num_layers=init.num_layers,
            num_heads=init.num_heads,
            intermediate_size=init.intermediate_size,
            max_position_embeddings=init.max_position_embeddings,
            seed=seed,
        )
        return DiffusionLM(model, tokenizer, "masked_lm", tokenizer.mask_token_id, (tokenizer.eos_token_id,))
    if not model_cfg.get("name_or_path"):
        raise ValueError("set model.name_or_path=<dir or hub id>, or model=tiny_scratch to build a fresh model")
    path = Path(str(model_cfg.name_or_path))
    if "checkpoints" in path.parts and not path.exists():
        raise FileNotFoundError(
            f"model.name_or_path={path} does not exist. The embedded model ships in the repo: check out "
            "checkpoints/ (git lfs is not used), or retrain it with `make train-tiny`."
        )
    return load_model(
        str(model_cfg.name_or_path),
        family=model_cfg.get("family"),
        trust_remote_code=bool(model_cfg.get("trust_remote_code", False)),
        dtype=model_cfg.get("dtype", "auto"),
        mask_token_id=model_cfg.get("mask_token_id"),
        eos_token_ids=model_cfg.get("eos_token_ids"),
    )


def build_datamodule(
    data_cfg: DictConfig, lm: DiffusionLM, seed: int = 0, train_mode: str = "sft"
) -> TaskDataModule:
    """The task DataModule; ``train_mode="prompts"`` streams prompt batches for RL instead of SFT batches."""
    kwargs: dict[str, Any] = OmegaConf.to_container(data_cfg, resolve=True)  # type: ignore[assignment]
    return TaskDataModule(chat=lm.chat, mask_token_id=lm.mask_token_id, seed=seed, train_mode=train_mode, **kwargs)


def build_logger(cfg: DictConfig, root: Path, run_id: str | None = None):
    """The MLflow logger for this run (``None`` when ``logger=none``), with params and config logged."""
    logger_cfg = cfg.logger
    if not logger_cfg.get("tracking_uri"):
        return None
    tags = {
        "task_name": cfg.task_name,
        "model": cfg.model.get("name_or_path") or "tiny_scratch",
        "model_family": cfg.model.get("family") or "auto",
        "strategy": cfg.trainer.strategy,
        "devices": cfg.trainer.devices,
        "accelerator": cfg.trainer.accelerator,
        **cfg.get("tags", {}),
    }
    logger = make_mlflow_logger(
        tracking_uri=logger_cfg.tracking_uri,
        experiment_name=logger_cfg.experiment_name,
        run_name=cfg.get("run_name") or cfg.task_name,
        root=root,
        tags=tags,
        artifact_location=logger_cfg.get("artifact_location"),
        run_id=run_id,
    )
    if logger_cfg.get("log_config", True) and run_id is None:
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            log_config(logger, OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_yaml(cfg, resolve=True))
    return logger


def build_trainer(
    trainer_cfg: DictConfig, logger, callbacks: list, default_root_dir: str, manual_optimization: bool = False
) -> L.Trainer:
    """The Lightning Trainer. ``manual_optimization`` (RL modules clip per update themselves) leaves out
    ``trainer.gradient_clip_val``, which Lightning refuses for manually optimised modules."""
    if trainer_cfg.get("num_threads"):
        torch.set_num_threads(int(trainer_cfg.num_threads))
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.get("num_nodes", 1),
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        max_steps=trainer_cfg.max_steps,
        val_check_interval=trainer_cfg.val_check_interval,
        check_val_every_n_epoch=None,
        limit_val_batches=trainer_cfg.get("limit_val_batches"),
        gradient_clip_val=None if manual_optimization else trainer_cfg.gradient_clip_val,
        accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        fast_dev_run=trainer_cfg.fast_dev_run,
        deterministic=trainer_cfg.deterministic,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=default_root_dir,
        use_distributed_sampler=False,  # the DataModule shards by rank itself, without padding duplicates
        enable_model_summary=False,
    )


def load_decoder_preset(name: str) -> dict[str, Any]:
    """The mapping in ``configs/decoder/<name>.yaml`` (what ``decoder=<name>`` selects)."""
    from dllm_lab.paths import config_dir

    path = config_dir() / "decoder" / f"{name}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown decoder preset {name!r}; available: {choices}")
    preset = OmegaConf.load(path)
    merged = OmegaConf.create()
    for parent in preset.pop("defaults", []):  # presets extend `base` through Hydra's defaults list
        if parent != "_self_":
            merged = OmegaConf.merge(merged, load_decoder_preset(parent))
    return dict(OmegaConf.to_container(OmegaConf.merge(merged, preset), resolve=True))  # type: ignore[arg-type]


def scale_decoder(values: dict[str, Any], gen_length: int) -> dict[str, Any]:
    """A preset moved to another generation length, keeping tokens per step and block length.

    Ascending (ASS) presets keep their number of blocks instead: their blocks are peeled from the step
    sizes, and ``log2 L`` steps allow at most ``log2 L`` blocks.
    """
    values = dict(values)
    if values.get("steps"):
        values["steps"] = max(1, values["steps"] * gen_length // values["gen_length"])
    if values.get("schedule") == "ascending" and values.get("block_length"):
        values["block_length"] = max(1, values["block_length"] * gen_length // values["gen_length"])
    values["gen_length"] = gen_length
    return values
