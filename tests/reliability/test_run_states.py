"""Item 4 in-process: each way a job ends gives its MLflow run one true state; the stop signals save a checkpoint;
the metric queue's edges (a full buffer, pickling for ddp_spawn, failed uploads)."""

from __future__ import annotations

import logging
import pickle
import signal

import lightning as L
import mlflow
import pytest
from tiny_runs import TINY_TRAIN

from dllm_lab.paths import job_id
from dllm_lab.runs import run_train
from dllm_lab.runs.eval import run_state
from dllm_lab.tracking import guarded, make_mlflow_logger
from dllm_lab.training.checkpoints import load_checkpoint
from servers import free_port


def _status(run_id: str) -> str:
    return mlflow.MlflowClient().get_run(run_id).info.status


@pytest.mark.parametrize(("error", "state"), [(None, "FINISHED"), (ValueError("boom"), "FAILED"),
                                               (KeyboardInterrupt(), "KILLED")])
def test_a_job_gives_its_run_one_state(tmp_path, error, state):
    logger = make_mlflow_logger(mlflow.get_tracking_uri(), "dllm-lab/states", "job", root=tmp_path,
                                output_dir=tmp_path)
    with pytest.raises(type(error)) if error else _nothing(), run_state(logger):
        logger.log_metrics({"loss": 1.0}, step=0)
        logger.finalize("success")  # what Lightning calls after each stage: while held, only a flush
        assert _status(logger.run_id) == "RUNNING"
        if error:
            raise error
    assert _status(logger.run_id) == state
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(logger.run_id, "loss")] == [0]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stop(L.Callback):
    """Sends this process a stop signal after step ``at``, as a scheduler or a user would."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum = at, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_finishes_the_step_saves_and_marks_the_run_killed(compose_cfg, tmp_path, signum):
    cfg = compose_cfg("train", [*TINY_TRAIN, "trainer.max_steps=50", "trainer.val_check_interval=100"])
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (nohup ignores Ctrl-C)
    try:
        with pytest.raises(SystemExit):  # Lightning's SIGTERMException
            run_train(cfg, callbacks=[_Stop(at=3, signum=signum)])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the Ctrl-C handler is put back"
    finally:
        signal.signal(signal.SIGINT, before)
    assert load_checkpoint(tmp_path / "checkpoints" / "interrupted.ckpt")["global_step"] == 3
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("dllm-lab/train").experiment_id])
    assert run.info.status == "KILLED"


def test_the_queue_keeps_a_bounded_backlog_and_survives_pickling(tmp_path, caplog):
    logger = make_mlflow_logger(f"http://127.0.0.1:{free_port()}", "x", "job", root=tmp_path, output_dir=tmp_path)
    logger.max_buffered = 3
    logger._start_sender = lambda: None  # no server: keep everything queued
    with caplog.at_level(logging.WARNING):
        logger.log_metrics({"a": 1.0, "b": 2.0}, step=0)
        logger.log_metrics({"a": 3.0, "b": 4.0}, step=1)
    assert len(logger._queue) == 3 and logger._dropped == 1 and "dropped" in caplog.text
    del logger._start_sender
    clone = pickle.loads(pickle.dumps(logger))  # what ddp_spawn does to the logger
    assert len(clone._queue) == 0 and clone.max_buffered == 3 and not clone.tracking_down


def test_a_failed_upload_is_a_warning_and_marks_the_server_down(tmp_path, caplog):
    logger = make_mlflow_logger(mlflow.get_tracking_uri(), "dllm-lab/up", "job", root=tmp_path)

    def fail() -> None:
        raise ConnectionError("refused")

    with caplog.at_level(logging.WARNING):
        assert guarded(logger, "results.md", fail) is False
        assert logger.tracking_down and guarded(logger, "plots/a.png", lambda: None) is False
    assert "results.md not uploaded (refused)" in caplog.text and "plots/a.png not uploaded" in caplog.text
    logger._mark_up()
    assert not logger.tracking_down and guarded(logger, "ok", lambda: None) is True


def test_the_job_id_is_the_launchers_when_there_is_one(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    import os

    assert job_id() == str(os.getpid())
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "elastic-7")
    assert job_id() == "elastic-7"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert job_id() == "4242"
