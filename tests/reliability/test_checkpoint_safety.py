"""Item 1: a crafted checkpoint must not run code, under ``ckpt_path=`` or the export command."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from dllm_lab.paths import project_root
from dllm_lab.runs import export_checkpoint, run_train
from dllm_lab.training.checkpoints import UnsafeCheckpointError, load_checkpoint


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil_ckpt(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with path.open("wb") as fh:
        pickle.dump({"state_dict": {}, "mlflow_run_id": _Payload(str(marker)), "hyper_parameters": {}}, fh)
    return path, marker


def test_loading_refuses_code(evil_ckpt):
    path, marker = evil_ckpt
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*evil.ckpt.*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_resume_refuses_the_crafted_checkpoint_even_without_a_logger(evil_ckpt, compose_cfg):
    path, marker = evil_ckpt
    from tiny_runs import TINY_TRAIN

    cfg = compose_cfg("train", [*TINY_TRAIN, f"ckpt_path={path}", "logger=none", "trainer.max_steps=1"])
    with pytest.raises(UnsafeCheckpointError):
        run_train(cfg)
    assert not marker.exists()


def test_export_refuses_the_crafted_checkpoint(evil_ckpt, tmp_path):
    path, marker = evil_ckpt
    with pytest.raises(UnsafeCheckpointError):
        export_checkpoint(path, tmp_path / "out")
    out = subprocess.run([sys.executable, "-m", "dllm_lab.cli.export", str(path), str(tmp_path / "out2")],
                         capture_output=True, text=True, cwd=project_root())
    assert out.returncode != 0 and "refusing to load" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists() and not (tmp_path / "out2").exists()


def test_a_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.ckpt is not a readable checkpoint"):
        load_checkpoint(path)
