"""``run_train(cfg)``: the body of the training entry point, callable from tests and notebooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dllm_lab.config import ConfigError, validate_config
from dllm_lab.factory import build_datamodule, build_logger, build_model, build_trainer
from dllm_lab.paths import project_root
from dllm_lab.training.callbacks import MLflowRunId, TrainingCurve, export_pretrained
from dllm_lab.training.mdlm import MDLMModule

log = logging.getLogger(__name__)


def _resume_run_id(ckpt_path: str | None) -> str | None:
    if not ckpt_path:
        return None
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return torch.load(ckpt_path, map_location="cpu", weights_only=False).get("mlflow_run_id")


def run_train(cfg: DictConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train (MDLM SFT, or the GRPO family when ``algo`` has an ``estimator``); optionally export and
    evaluate. ``callbacks``: extra Lightning callbacks. Returns the final metrics."""
    validate_config(cfg, stage="train")
    root = project_root()
    L.seed_everything(cfg.seed, workers=True)
    lm = build_model(cfg.model, cfg.data, seed=cfg.seed)
    rl = is_rl(cfg)
    datamodule = build_datamodule(cfg.data, lm, seed=cfg.seed, train_mode="prompts" if rl else "sft")
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = build_grpo_module(cfg, lm, run_config) if rl else MDLMModule(
        lm,
        lr=cfg.algo.lr,
        weight_decay=cfg.algo.weight_decay,
        betas=tuple(cfg.algo.betas),
        warmup_steps=cfg.algo.warmup_steps,
        total_steps=cfg.trainer.max_steps,
        min_lr_ratio=cfg.algo.min_lr_ratio,
        run_config=run_config,
    )
    logger = build_logger(cfg, root, run_id=_resume_run_id(cfg.get("ckpt_path")))
    output_dir = Path(cfg.paths.output_dir)
    curve = TrainingCurve()
    callbacks = [
        *(callbacks or []),
        curve,
        MLflowRunId(),
        ModelCheckpoint(
            dirpath=output_dir / "checkpoints",
            every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
            save_top_k=-1,
            save_last=True,
        ),
    ]
    trainer = build_trainer(cfg.trainer, logger, callbacks, str(output_dir), manual_optimization=rl)
    if cfg.get("validate_before_fit") and not cfg.get("ckpt_path") and not cfg.trainer.fast_dev_run:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("export_dir") and trainer.is_global_zero and not cfg.trainer.fast_dev_run:
        export = export_pretrained(lm, cfg.export_dir, OmegaConf.to_yaml(cfg, resolve=True), curve.rows)
        _plot_curve(curve.rows, export / "training_curve.png")
        log.info("exported the trained model to %s", export)
    if cfg.get("eval_after_fit"):
        from dllm_lab.evaluation.run import evaluate

        metrics.update(evaluate(cfg, lm, datamodule, logger, root))
    return metrics


def is_rl(cfg: DictConfig) -> bool:
    """Whether ``algo`` is a GRPO-family preset (it has an ``estimator``)."""
    return "estimator" in cfg.algo


def build_grpo_module(cfg: DictConfig, lm, run_config: dict[str, Any]):
    """A :class:`GRPOModule` from the ``algo`` and ``decoder`` groups (rollouts use ``algo.temperature``)."""
    import dataclasses

    from dllm_lab.decoding import DecodeConfig
    from dllm_lab.training.grpo import GRPOModule

    algo = cfg.algo
    if len(algo.rewards) != len(algo.reward_weights):
        raise ConfigError(
            f"algo.rewards={list(algo.rewards)} and algo.reward_weights={list(algo.reward_weights)} need one "
            "weight per reward"
        )
    greedy = DecodeConfig.from_dict(dict(cfg.decoder), prefix="decoder")
    rollout = dataclasses.replace(greedy, temperature=float(algo.temperature))
    lora = OmegaConf.to_container(algo.lora, resolve=True) if algo.get("lora") else None
    return GRPOModule(
        lm, rollout, dataclasses.replace(greedy, temperature=0.0),
        estimator=algo.estimator, rewards=dict(zip(algo.rewards, map(float, algo.reward_weights), strict=True)),
        tcr_rule=algo.tcr_rule, tse_skip_ratio=algo.tse_skip_ratio, tse_weighting=algo.tse_weighting,
        tse_alpha=algo.tse_alpha, num_generations=algo.num_generations, num_iterations=algo.num_iterations,
        eps=algo.eps, beta=algo.beta, p_mask_prompt=algo.p_mask_prompt, advantage_scale=algo.advantage_scale,
        lora=lora, lr=algo.lr, weight_decay=algo.weight_decay, betas=tuple(algo.betas),
        warmup_steps=algo.warmup_steps, total_steps=cfg.trainer.max_steps, min_lr_ratio=algo.min_lr_ratio,
        max_grad_norm=algo.max_grad_norm, sample_table_every=algo.sample_table_every, seed=cfg.seed,
        run_config=run_config,
    )


@rank_zero_only
def _plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in ("train_loss", "val_loss"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("MDLM loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
