"""Items 4, 8 and 9: honest run states, kills of real processes (SIGTERM, SIGKILL) and exact resumes with each
metric point logged once, and a NaN stop that falls back to the last good checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import mlflow
import pytest
import torch
from tiny_runs import TINY_TRAIN

from dllm_lab.paths import project_root
from dllm_lab.runs import run_train
from dllm_lab.training.checkpoints import load_checkpoint


class _Status(L.Callback):
    """The MLflow state of the run while it trains."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(mlflow.MlflowClient().get_run(trainer.logger.run_id).info.status)


@pytest.mark.slow
def test_an_rl_run_validated_at_step_0_stays_running_until_it_has_trained(compose_cfg, tiny_model_dir):
    status = _Status()
    cfg = compose_cfg("train", [
        "experiment=rl_countdown", f"model.name_or_path={tiny_model_dir}", "data.num_eval=2", "data.eval_batch_size=2",
        "data.batch_size=2", "algo.num_generations=2", "trainer.max_steps=2", "trainer.num_threads=1",
        "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "eval_after_fit=true",
        "validate_before_fit=true",
    ])
    run_train(cfg, callbacks=[status])
    assert status.seen and set(status.seen) == {"RUNNING"}, "the step-0 validation must not end the run"
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("dllm-lab/rl_countdown").experiment_id])
    assert run.info.status == "FINISHED" and "val/countdown/accuracy" in run.data.metrics
    assert "eval/countdown/accuracy" in run.data.metrics


def _launch(tmp_path: Path, name: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    env.pop("DLLM_LAB_JOB_ID", None)
    cmd = [sys.executable, "-m", "dllm_lab.cli.train", *TINY_TRAIN, "trainer.val_check_interval=100000",
           f"hydra.run.dir={tmp_path / name}", "run_name=job", *overrides]
    log = (tmp_path / f"{name}.log").open("wb")
    # a job started from a terminal: Ctrl-C is not ignored, even when the test suite runs in the background
    restore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.Popen(cmd, cwd=project_root(), env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=restore_ctrl_c)


def _wait_for(predicate, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the job exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _run(tmp_path: Path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("dllm-lab/train").experiment_id])
    return client, run


def _loss_steps(client, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_saves_a_checkpoint_marks_the_run_killed_and_the_resume_finishes_it(tmp_path, stop):
    job = _launch(tmp_path, "job", "trainer.max_steps=100000", "trainer.checkpoint_every_n_steps=5")
    checkpoints = tmp_path / "job" / "checkpoints"
    _wait_for(lambda: (checkpoints / "epoch=0-step=10.ckpt").exists(), 240, job, tmp_path / "job.log")
    job.send_signal(stop)
    job.wait(timeout=60)
    assert job.returncode != 0
    saved = load_checkpoint(checkpoints / "interrupted.ckpt")
    stopped_at = saved["global_step"]
    assert stopped_at >= 10
    client, run = _run(tmp_path)
    assert run.info.status == "KILLED"

    resumed = _launch(tmp_path, "resumed", f"trainer.max_steps={stopped_at + 5}",
                      f"ckpt_path={checkpoints / 'interrupted.ckpt'}")
    assert resumed.wait(timeout=240) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    client, run = _run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["resume_count"] == "1"
    assert run.data.tags["resumed_1_from_step"] == str(stopped_at)
    assert _loss_steps(client, run) == list(range(stopped_at + 5)), "every step once, none lost or repeated"


@pytest.mark.slow
def test_after_sigkill_the_run_is_not_finished_and_the_resume_logs_each_step_once(tmp_path):
    # sparse checkpoints: the one chosen below outlives the 3-newest retention until the kill lands
    job = _launch(tmp_path, "job", "trainer.max_steps=100000", "trainer.checkpoint_every_n_steps=25")
    checkpoints = tmp_path / "job" / "checkpoints"

    chosen: list[Path] = []

    def past_a_checkpoint() -> bool:  # points logged after a checkpoint: the resume runs those steps again
        try:
            client, run = _run(tmp_path)
            logged = max(_loss_steps(client, run), default=0)
        except (ValueError, AttributeError, mlflow.exceptions.MlflowException):  # no run yet
            return False
        steps = {load_checkpoint(p)["global_step"]: p for p in checkpoints.glob("epoch=0-step=*.ckpt")}
        behind = [s for s in steps if s <= logged - 3]
        if behind:
            chosen.append(steps[max(behind)])
        return bool(behind)

    _wait_for(past_a_checkpoint, 240, job, tmp_path / "job.log")
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    client, run = _run(tmp_path)
    assert run.info.status == "RUNNING", "a killed run is never shown as finished"
    logged = max(_loss_steps(client, run))
    step = load_checkpoint(chosen[-1])["global_step"]  # retention keeps it: at most one newer was written since
    resumed = _launch(tmp_path, "resumed", f"trainer.max_steps={step + 10}", f"ckpt_path='{chosen[-1]}'")  # '=' in it
    assert resumed.wait(timeout=240) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    client, run = _run(tmp_path)
    assert _loss_steps(client, run) == list(range(max(logged + 1, step + 10))), "each step once"
    assert run.info.status == "FINISHED" and run.data.tags["resumed_1_from_step"] == str(step)


class _Diverge(L.Callback):
    """Blows the weights up after update ``at``, the way a too-high learning rate does."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("inf"))


def test_a_nan_stop_falls_back_to_the_last_good_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg("train", [*TINY_TRAIN, "trainer.max_steps=20", "trainer.checkpoint_every_n_steps=1",
                                "trainer.val_check_interval=100", "logger=none"])
    with pytest.raises(FloatingPointError) as info:
        run_train(cfg, callbacks=[_Diverge(at=4)])
    message = str(info.value)
    assert "step 4" in message and "gradient clipping is on" in message and "epoch=0-step=3.ckpt" in message
    checkpoints = tmp_path / "checkpoints"
    last = load_checkpoint(checkpoints / "last.ckpt")
    assert last["global_step"] == 3 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    names = {p.name for p in checkpoints.iterdir()}
    assert "epoch=0-step=4.ckpt.diverged" in names and "epoch=0-step=4.ckpt" not in names
    assert load_checkpoint(checkpoints / "last-good.ckpt")["global_step"] == 3
