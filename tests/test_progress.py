"""Live progress and a quiet terminal: the decode row moves with every committed token, the RL bar counts
updates with the reward, every rollout logs a point, the console keeps only what a user reads."""

from __future__ import annotations

import io
import logging
import re
import sys

import mlflow
import pytest
from hydra.core.global_hydra import GlobalHydra
from rich.console import Console

from dllm_lab.decoding import DecodeConfig, decode
from dllm_lab.runs import run_eval, run_train
from dllm_lab.training.progress import LiveProgress

SMALL = ["decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "trainer.num_threads=1"]


class RecordingProgress(LiveProgress):
    """The live display drawing into a string, with every call of the decoding callback recorded."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        super().__init__(console=Console(file=self.out, width=160, force_terminal=False))
        self.events: list[tuple] = []

    def decode_started(self, masked: int, total_steps: int | None) -> None:
        self.events.append(("start", masked, total_steps))
        super().decode_started(masked, total_steps)

    def decode_advanced(self, committed: int, step: int) -> None:
        self.events.append(("step", committed, step))
        super().decode_advanced(committed, step)


@pytest.mark.parametrize("rule", [{"steps": 8}, {"adaptive": "med", "steps": None, "scorer": "entropy"}])
def test_the_decode_row_counts_every_committed_token_and_step(tiny_lm, rule):
    bar = RecordingProgress()
    cfg = DecodeConfig(gen_length=16, block_length=8, **rule)
    out = decode(tiny_lm, ["1+1=", "2+3="], cfg, [bar.decode_callback])
    start, *steps = bar.events
    assert start == ("start", 2 * 16, cfg.total_steps)
    assert sum(committed for _, committed, _ in steps) == 2 * 16  # every masked position, once
    assert [step for _, _, step in steps] == list(range(1, out.nfe + 1))  # one update per forward step
    assert bar._decode is None  # the row is gone once the decode ends


def test_an_eval_run_shows_a_row_per_task_and_the_decode_rides_along(compose_cfg, tiny_model_dir, monkeypatch):
    bars: list[RecordingProgress] = []

    def recording_bar(*args, **kwargs):
        bars.append(RecordingProgress())
        return bars[-1]

    monkeypatch.setattr("dllm_lab.training.trainer.LiveProgress", recording_bar)
    run_eval(compose_cfg("eval", [f"model.name_or_path={tiny_model_dir}", "data.num_eval=4", "data.eval_batch_size=2",
                                  "data.eval_tasks={arith: synthetic, sudoku4: synthetic}", *SMALL, "logger=none",
                                  "print_table=false"]))
    (bar,) = bars
    shown = bar.out.getvalue()
    assert re.search(r"eval arith .* 2/2 batches", shown) and re.search(r"eval sudoku4 .* 2/2 batches", shown), shown
    assert sum(e[0] == "start" for e in bar.events) == 4  # two batches of each task, each decode reported


def test_an_rl_run_counts_updates_shows_the_reward_logs_each_rollout_and_prints_before_and_after(
        compose_cfg, tiny_model_dir, monkeypatch, capsys):
    bars: list[RecordingProgress] = []
    monkeypatch.setattr("dllm_lab.training.trainer.LiveProgress", lambda: bars.append(RecordingProgress()) or bars[-1])
    metrics = run_train(compose_cfg("train", [
        "experiment=rl_countdown", f"model.name_or_path={tiny_model_dir}", "data.num_eval=2", "data.eval_batch_size=2",
        "data.batch_size=2", "algo.num_generations=2", "algo.num_iterations=1", "trainer.max_steps=2",
        "trainer.log_every_n_steps=10", "trainer.val_check_interval=100", *SMALL, "eval_decoders={}",
        "data.eval_tasks={countdown: synthetic}",
    ]))
    # one train/* point per rollout, although log_every_n_steps=10 > max_steps
    client = mlflow.MlflowClient()
    run = client.get_run(client.search_runs([client.get_experiment_by_name("dllm-lab/rl_countdown").experiment_id])[0]
                         .info.run_id)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/reward")] == [0, 1]
    # the bar of the fit counted updates against max_steps and showed the reward
    fit = next(b for b in bars if "RL updates" in b.out.getvalue())
    assert re.search(r"RL updates .* 2/2 +reward -?\d\.\d{3}", fit.out.getvalue()), fit.out.getvalue()
    assert any(e[0] == "start" for e in fit.events)  # the rollouts' decodes fed the decode row
    # the final table: aligned, naming model, decoder and length, before -> after
    out = capsys.readouterr().out
    # the weights decoded after fit are the trained ones, named with the model they started from
    header = f"model the trained model (trained from {tiny_model_dir}) · decoder semi_ar (L=16, 8 steps, block 8)"
    assert header in out, out
    assert re.search(r"\| countdown +\| +2 \| +\d\.\d{3} -> \d\.\d{3} \|", out), out
    assert "before/countdown/accuracy" in run.data.metrics and "eval/countdown/accuracy" in metrics
    assert metrics["eval/countdown/accuracy"] == pytest.approx(run.data.metrics["eval/countdown/accuracy"])


TINY_SCRATCH = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "data.num_eval=2", "data.eval_batch_size=2",
    "data.eval_tasks={arith: synthetic}", *SMALL,
]


@pytest.fixture
def restore_terminal(monkeypatch):
    """``tidy_terminal`` changes process-wide state (environment, mlflow's level, transformers' bars)."""
    from transformers.utils import logging as hf_logging

    for name in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    level = logging.getLogger("mlflow").level
    yield
    logging.getLogger("mlflow").setLevel(level)
    hf_logging.enable_progress_bar()


@pytest.mark.parametrize("verbose", [False, True])
def test_the_console_is_quiet_unless_verbose(verbose, tmp_path, monkeypatch, capfd, restore_terminal):
    from dllm_lab.cli import eval as eval_cli

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["dllm-eval", *TINY_SCRATCH, f"verbose={str(verbose).lower()}",
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    try:
        eval_cli.main()
    finally:
        GlobalHydra.instance().clear()
    out, err = capfd.readouterr()
    console = out + err
    assert re.search(r"\| arith +\| +2 \|", console)
    narration = ["GPU available", "Seed set to", "Creating initial MLflow database tables", "not found. Creating it"]
    if verbose:
        assert "GPU available" in console, console
    else:
        assert not [line for line in narration if line in console], console
        assert "LeafSpec" not in console
        log = next((tmp_path / "run").glob("*.log")).read_text()
        assert "GPU available" in log  # the job's log file keeps every line
