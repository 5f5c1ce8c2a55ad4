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
    import sys
    from pathlib import Path

    from servers import start_until_healthy

    base = Path(base)
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts")]
    return start_until_healthy(cmd, base, port)
