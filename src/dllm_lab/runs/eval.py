"""``run_eval(cfg)``: load the model, decode the evaluation sets (or a decoder sweep), log and print results."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import lightning as L

from dllm_lab.data import TaskDataModule
from dllm_lab.decoding import DecodeConfig
from dllm_lab.evaluation.evaluate import evaluate_decoder
from dllm_lab.evaluation.module import decoder_about
from dllm_lab.evaluation.report import aligned, format_table, with_before
from dllm_lab.evaluation.sweep import run_sweep
from dllm_lab.factory import Job, build_datamodule, build_job, build_model, resolve_prompt_style
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.tracking import RunLogger
from dllm_lab.training.callbacks import INTERRUPTIONS

if TYPE_CHECKING:
    from omegaconf import DictConfig


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    """Decode ``data.eval_tasks`` with ``decoder`` (or every ``sweep`` setting), log everything; returns
    flat ``eval/<task>/<metric>`` values and the table (a sweep returns its rows and tables)."""
    job = build_job(cfg, "eval")  # every bad value fails here, before a model is loaded
    job.trainer.check_machine()  # a GPU preset without CUDA, several nodes without a launcher
    L.seed_everything(job.seed, workers=True)
    lm = build_model(job)
    resolve_prompt_style(job, lm)
    datamodule = build_datamodule(job, lm)
    logger = job.make_logger(log_run_config=True)
    with run_state(logger):
        if job.sweep is not None:
            return run_sweep(job.sweep, lm, datamodule, job.trainer, job.output_dir, logger,
                             lambda name, tags: job.make_logger(run_name=name, tags=tags), job.eval_temporal,
                             job.decode_callbacks)
        return evaluate(job, lm, datamodule, logger)


@contextlib.contextmanager
def run_state(logger) -> Iterator[None]:
    """Hold an MLflow run open across every stage of a job, then give it its one true state: FINISHED when
    the block completes, KILLED on SIGTERM / Ctrl-C, FAILED on an error."""
    if not isinstance(logger, RunLogger):
        yield
        return
    try:
        with logger.held_open():
            yield
    except INTERRUPTIONS:
        logger.finish("killed")
        raise
    except BaseException:
        logger.finish("failed")
        raise
    logger.finish("success")


def evaluate(job: Job, lm: DiffusionLM, datamodule: TaskDataModule, logger, stage: str = "eval",
             before: dict[str, dict[str, dict[str, float]]] | None = None) -> dict[str, Any]:
    """The test loop with ``job.decoder``, then with each of ``job.eval_decoders`` (metrics ``eval_<name>/...``,
    artifacts under ``eval_<name>/``); prints the tables on rank 0; returns flat metrics, ``table`` and
    ``results`` (per decoder name, per task). ``stage="before"``: the same decodes before training (metrics
    ``before/...``, ``before_<name>/...``; artifacts under ``before/``), silent; ``before``: that stage's
    ``results``, shown in the tables as ``before -> after``."""
    runs = [("", job.decoder)] + [(f"_{name}", decoder) for name, decoder in job.eval_decoders.items()]
    tables, metrics, results_by, is_zero = [], {}, {}, True
    for suffix, decoder in runs:
        prefix = stage + suffix
        temporal = job.eval_temporal if prefix == "eval" else None
        records_dir = job.output_dir if prefix == "eval" else job.output_dir / prefix
        results, is_zero = evaluate_decoder(lm, datamodule, decoder, job.trainer, logger, job.output_dir, temporal,
                                            records_dir, job.decode_callbacks, prefix)
        results_by[suffix] = results
        metrics |= {f"{prefix}/{t}/{k}": v for t, row in results.items() for k, v in row.items()}
        if before is not None and suffix in before:
            results = with_before(results, before[suffix])
        tables.append(f"{describe(job, decoder, suffix.lstrip('_'))}\n\n{aligned(format_table(results))}")
    table = "\n\n".join(tables)
    if is_zero and job.print_table and stage == "eval":
        print_summary(table, logger, job)
    return metrics | {"table": table, "results": results_by}


def describe(job: Job, decoder: DecodeConfig, name: str = "") -> str:
    """What a results table was decoded with: the model, the decoder preset and its length and steps."""
    model = job.config.get("model", {}).get("name_or_path") or "tiny model built from scratch"
    if job.stage == "train":  # the evaluation after fit decodes the trained weights, not the ones it started from
        model = f"{job.config.get('export_dir') or 'the trained model'} (trained from {model})"
    preset = name or (job.identity.choices.get("decoder") if job.identity else None) or "decoder"
    return f"model {model} · decoder {preset} ({decoder_about(decoder, block=True)})"


def print_summary(table: str, logger, job: Job) -> None:
    print("\n" + table)
    if logger is None or not hasattr(logger, "run_id"):
        return
    uri = job.tracking_uri or ""
    print(f"\nMLflow run {logger.run_id} in experiment '{job.experiment_name}'.")
    if uri.startswith("sqlite:"):
        print(f"Open the UI with:  mlflow ui --backend-store-uri {uri}   (then http://127.0.0.1:5000)")
    else:
        print(f"Open {uri} in a browser.")


__all__ = ["evaluate", "print_summary", "run_eval"]
