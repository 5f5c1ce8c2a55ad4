"""Shared fixtures: composed Hydra configs, a tiny random model, an isolated MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from dllm_lab.paths import config_dir, ensure_root_env

ROOT = ensure_root_env()
# one thread per xdist worker (the workers share the cores), two in a single process
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs to its own sqlite store, never to the project's mlflow.db.

    Every test also gets a fresh DDP rendezvous port: Lightning's spawn launcher writes MASTER_PORT into
    os.environ and each later Trainer of the process reuses it, so one port picked by the first DDP test
    would serve every DDP test of the session, however long another process on a shared machine has held
    it since. The MLflow client's own tracking URI is set to the test's store for the same reason."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    # Lightning's MLFlowLogger calls mlflow.set_tracking_uri, a process-wide setting that outranks the variable:
    # without this, a test after one whose server has since died talks to that dead server (seen under xdist)
    mlflow.set_tracking_uri(store)
    monkeypatch.setenv("DLLM_LAB_ROOT", str(ROOT))
    monkeypatch.delenv("MASTER_PORT", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    yield


# the decoder presets a training run can pick (``posterior`` is evaluation's; ``base`` is every preset's base)
RUN_DECODERS = sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml") if p.stem not in ("base", "posterior"))


def small_decoder(name: str, length: int | None = None) -> dict:
    """Decoder preset ``name`` scaled to a fast-dev canvas of ``length`` tokens (by default 16, and 32 for an
    infilling preset: the template needs room for its delimiter, with reasoning 8 and answer 4), no block
    longer than the canvas."""
    from dllm_lab.factory import load_decoder_preset, scale_decoder

    preset = load_decoder_preset(name)
    length = length or (32 if preset.get("infill") else 16)
    values = scale_decoder(preset, length)
    if values.get("block_length") and values["block_length"] > length:
        values["block_length"] = length
    if values.get("infill"):
        values.update(infill_reasoning_length=8, infill_answer_length=4)
    return values


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` as the entry point would, with outputs in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        artifacts = output_dir / "mlartifacts"
        if (cfg.logger.get("tracking_uri") or "").startswith("sqlite:"):
            cfg.logger.artifact_location = artifacts.as_uri()
        del cfg.hydra
    return cfg


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
        return compose_config(config_name, list(overrides or []), tmp_path)

    yield _compose
    GlobalHydra.instance().clear()


def make_tiny_lm(hidden_size: int = 32, num_layers: int = 2, seed: int = 0):
    """A randomly initialised tiny masked diffusion LM (seconds to build, no download)."""
    from dllm_lab.models import DiffusionLM, build_tiny_model, build_tokenizer
    from dllm_lab.models.tiny import task_corpus

    tokenizer = build_tokenizer(task_corpus(["arith", "countdown", "sudoku4"], 200), vocab_size=400)
    model = build_tiny_model(
        tokenizer, hidden_size=hidden_size, num_layers=num_layers, num_heads=2, intermediate_size=2 * hidden_size,
        seed=seed,
    ).eval()
    return DiffusionLM(model, tokenizer, "masked_lm", tokenizer.mask_token_id, (tokenizer.eos_token_id,))


@pytest.fixture(scope="session")
def tiny_lm():
    return make_tiny_lm()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm):
    """``tiny_lm`` saved with ``save_pretrained``, loadable by :func:`dllm_lab.models.load_model`."""
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_lm.save_pretrained(path)
    return path


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DLLM_LAB_SKIP_SLOW"):
        skip = pytest.mark.skip(reason="DLLM_LAB_SKIP_SLOW is set")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
