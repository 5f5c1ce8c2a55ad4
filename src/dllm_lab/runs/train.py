"""``run_train(cfg)``: MDLM SFT or the GRPO family (``algo.kind``), then optional export and evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.factory import Job, build_datamodule, build_job, build_model, resolve_prompt_style
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.runs.eval import evaluate, run_state
from dllm_lab.tracking import RunLogger
from dllm_lab.training.callbacks import (
    DivergenceGuard,
    GracefulExit,
    MLflowRunId,
    TrainingCurve,
    export_pretrained,
)
from dllm_lab.training.checkpoints import load_checkpoint
from dllm_lab.training.grpo import GRPOModule
from dllm_lab.training.mdlm import MDLMModule
from dllm_lab.training.posterior_sft import PosteriorSFTModule

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from dllm_lab.data import TaskDataModule

log = logging.getLogger(__name__)


def run_train(cfg: DictConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train, then export (``export_dir``) and evaluate (``eval_after_fit``; with ``eval_before_fit`` the same
    decodes ran first, and the tables show ``before -> after``). ``callbacks``: extra Lightning
    callbacks (on top of ``callbacks.*`` of the config). Returns the final metrics.

    The MLflow run ends FINISHED only when all of it finished; KILLED after SIGTERM or Ctrl-C (a checkpoint
    is saved on the way out), FAILED after an error; a non-finite loss falls back to the last good checkpoint.
    """
    job = build_job(cfg, "train")  # every bad value fails here, before a model is loaded
    job.trainer.check_machine()  # a GPU preset without CUDA, several nodes without a launcher
    L.seed_everything(job.seed, workers=True)
    lm = build_model(job)
    resolve_prompt_style(job, lm)
    datamodule = build_datamodule(job, lm)
    module = build_module(job, lm, datamodule)
    resume = load_checkpoint(job.ckpt_path) if job.ckpt_path else None
    logger = job.make_logger(run_id=resume.get("mlflow_run_id") if resume else None, log_run_config=True)
    if resume is not None and isinstance(logger, RunLogger):
        logger.resume(int(resume.get("global_step", 0)))
    checkpoint_dir = job.output_dir / "checkpoints"
    curve, divergence = TrainingCurve(), DivergenceGuard(checkpoint_dir)
    all_callbacks = [*(callbacks or []), *job.trainer_callbacks, curve, MLflowRunId(), GracefulExit(checkpoint_dir),
                     divergence]
    trainer = job.trainer.build(logger, all_callbacks, str(job.output_dir), manual_optimization=job.algo_kind == "grpo",
                                model=lm)
    with run_state(logger):
        fresh = not job.ckpt_path and not job.trainer.fast_dev_run  # a resumed run's "before" already ran
        before = None
        if job.eval_after_fit and job.eval_before_fit and fresh:
            before = evaluate(job, lm, datamodule, logger, stage="before")["results"]
        try:
            if job.validate_before_fit and fresh:
                trainer.validate(module, datamodule=datamodule, verbose=False)
            trainer.fit(module, datamodule=datamodule, ckpt_path=job.ckpt_path, weights_only=True)  # no code
        except FloatingPointError as err:
            raise FloatingPointError(f"{err}; {divergence.message}" if divergence.message else str(err)) from None
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if job.export_dir and trainer.is_global_zero and not job.trainer.fast_dev_run:
            export = export_pretrained(lm, job.export_dir, job.config_yaml, curve.rows)
            _plot_curve(curve.rows, export / "training_curve.png")
            log.info("exported the trained model to %s", export)
        if job.eval_after_fit:
            final = evaluate(job, lm, datamodule, logger, before=before)
            final.pop("results")
            metrics.update(final)
    return metrics


def build_module(job: Job, lm: DiffusionLM, datamodule: TaskDataModule | None = None) -> L.LightningModule:
    """:class:`MDLMModule` for ``algo.kind=sft``, :class:`GRPOModule` for ``grpo``, :class:`PosteriorSFTModule`
    for ``posterior_sft`` (noising its kept traces with ``datamodule``'s SFT collator)."""
    if job.algo_kind == "posterior_sft":
        assert job.posterior is not None and job.sampler is not None
        return PosteriorSFTModule(lm, job.posterior, job.sampler, job.decoder.replace(temperature=0.0), job.optim,
                                  job.seed, job.config, datamodule.collator if datamodule else None)
    if job.algo_kind == "grpo":
        assert job.grpo is not None
        return GRPOModule(lm, job.grpo, job.decoder, job.decoder.replace(temperature=0.0), job.optim, job.temporal,
                          job.seed, job.config)
    return MDLMModule(lm, job.optim, job.config)


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
