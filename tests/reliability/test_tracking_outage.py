"""Item 2: a tracking server that dies mid-run costs no training step, no checkpoint and no metric point."""

from __future__ import annotations

import json
import threading
import time

import lightning as L
import mlflow
import pytest
from tiny_runs import TINY_TRAIN, start_mlflow_server

from dllm_lab.runs import run_train
from servers import free_port, kill_server


class _Outage(L.Callback):
    """Kills the server (SIGKILL) after step ``kill_at``; restarts it on the same store in the background
    (``restart``); slows each step so that the outage spans many of them; records step times."""

    def __init__(self, server, base, port, kill_at: int, restart: bool, step_s: float = 0.15) -> None:
        self.server, self.base, self.port = server, base, port
        self.kill_at, self.restart, self.step_s = kill_at, restart, step_s
        self.times: list[float] = []
        self.killed_at: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.monotonic())
        time.sleep(self.step_s)
        if trainer.global_step == self.kill_at and self.killed_at is None:
            kill_server(self.server)
            self.killed_at = time.monotonic()
            if self.restart:
                def bring_back() -> None:
                    self.server = start_mlflow_server(self.base, self.port)
                threading.Thread(target=bring_back, daemon=True).start()


def _train(compose_cfg, tmp_path, monkeypatch, restart: bool, steps: int = 60):
    port, base = free_port(), tmp_path / "server"
    server = start_mlflow_server(base, port)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    outage = _Outage(server, base, port, kill_at=5, restart=restart)
    cfg = compose_cfg("train", [*TINY_TRAIN, f"trainer.max_steps={steps}", "trainer.checkpoint_every_n_steps=10",
                                "trainer.val_check_interval=1000", "run_name=outage"])
    try:
        run_train(cfg, callbacks=[outage])
        ended = time.monotonic()
    finally:
        kill_server(outage.server)
    return outage, ended, port, base


@pytest.mark.slow
@pytest.mark.server
def test_training_goes_on_through_an_outage_and_the_backlog_arrives(compose_cfg, tmp_path, monkeypatch):
    outage, _, port, base = _train(compose_cfg, tmp_path, monkeypatch, restart=True)
    gaps = [b - a for a, b in zip(outage.times, outage.times[1:], strict=False)]
    # a step used to wait minutes for the server; 15 s leaves room for a loaded machine
    assert len(outage.times) == 60 and max(gaps) < 15.0, f"a step waited {max(gaps):.1f} s for the server"
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["epoch=0-step=40.ckpt", "epoch=0-step=50.ckpt", "epoch=0-step=60.ckpt", "last.ckpt"]
    server = start_mlflow_server(base, port) if not _answers(port) else None
    try:
        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        (run,) = client.search_runs([client.get_experiment_by_name("dllm-lab/train").experiment_id])
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(60)), "every step's point arrives exactly once"
        assert run.info.status == "FINISHED"
    finally:
        if server is not None:
            kill_server(server)


@pytest.mark.slow
@pytest.mark.server
def test_a_server_that_never_returns_ends_the_run_in_time_and_keeps_every_point(compose_cfg, tmp_path, monkeypatch,
                                                                                 caplog):
    outage, ended, _, _ = _train(compose_cfg, tmp_path, monkeypatch, restart=False, steps=30)
    assert len(outage.times) == 30, "every step ran"
    assert ended - outage.killed_at < 60, f"the run took {ended - outage.killed_at:.0f} s to end after the outage"
    assert {"last.ckpt", "epoch=0-step=30.ckpt"} <= {p.name for p in (tmp_path / "checkpoints").iterdir()}
    unsent = [json.loads(line) for line in (tmp_path / "unlogged_metrics.jsonl").read_text().splitlines()]
    sent_before = 5  # points of steps 0..4 went out before the kill (at most; the queue may have held some)
    assert {p["step"] for p in unsent if p["key"] == "train/loss"} >= set(range(sent_before + 1, 30))
    assert "does not answer" in caplog.text and "unlogged_metrics.jsonl" in caplog.text


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
