"""Shared pieces of the reliability suite: tiny, fast training configs (not a test module)."""

from __future__ import annotations

TINY_TRAIN = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "data.batch_size=4", "data.num_eval=2",
    "data.eval_batch_size=2", "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0",
    "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "trainer.num_threads=1",
    "trainer.log_every_n_steps=1", "eval_after_fit=false",
]


def start_mlflow_server(base, port: int):
    """``mlflow server`` on 127.0.0.1:``port`` with a sqlite store in ``base`` (reused across restarts);
    returns the process once ``/health`` answers."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (base / "server.log").open("ab")
    # its own session: ``mlflow server`` serves from worker processes, and killing the group kills them all
    proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(base / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    kill_server(proc)
    raise RuntimeError("mlflow server did not answer /health in 90 s")


def kill_server(proc) -> None:
    """SIGKILL the server and its workers (a crash, not a shutdown)."""
    import contextlib
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
