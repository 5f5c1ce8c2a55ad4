"""Items 6, 7 and 10: an unreachable tracking server fails in seconds, jobs never share an output folder,
and checkpoints are kept in bounded number."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from tiny_runs import TINY_TRAIN

from dllm_lab.paths import project_root
from dllm_lab.runs import run_eval, run_train


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_fails_in_seconds_before_the_model_loads(compose_cfg, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    cfg = compose_cfg("eval", ["model.name_or_path=/nonexistent/model"])
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"does not answer.*logger=none"):
        run_eval(cfg)  # a FileNotFoundError would mean the model was built first
    assert time.perf_counter() - start < 30  # the client's retries took 257 s


@pytest.mark.slow
def test_jobs_started_in_the_same_second_get_their_own_folders(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DLLM_LAB_JOB_ID"}
    args = [sys.executable, "-m", "dllm_lab.cli.eval", "data.num_eval=1", "data.eval_batch_size=1",
            "data.eval_tasks={arith: synthetic}", "decoder.gen_length=8", "decoder.block_length=8", "decoder.steps=2",
            "trainer.num_threads=1", "logger=none", f"paths.log_dir={tmp_path}", "temporal.plots=false"]
    jobs = [subprocess.Popen(args, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)]
    for job in jobs:
        out, _ = job.communicate(timeout=300)
        assert job.returncode == 0, out.decode()[-2000:]
    runs = sorted((tmp_path / "eval" / "runs").iterdir())
    assert len(runs) == 2, runs
    for run in runs:
        assert (run / "eval.log").exists() and (run / ".hydra" / "config.yaml").exists()
        assert len(list((run / "temporal").glob("*.parquet"))) == 1


@pytest.mark.slow
def test_checkpoint_retention_is_bounded(compose_cfg, tmp_path):
    cfg = compose_cfg("train", [*TINY_TRAIN, "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=1",
                                "trainer.val_check_interval=100", "logger=none"])
    run_train(cfg)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["epoch=0-step=4.ckpt", "epoch=0-step=5.ckpt", "epoch=0-step=6.ckpt", "last.ckpt"], names
