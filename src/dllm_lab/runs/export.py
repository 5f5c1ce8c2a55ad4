"""Turn a Lightning training checkpoint into a ``save_pretrained`` directory that ``load_model`` reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from dllm_lab.factory import model_from_run_config
from dllm_lab.training.callbacks import export_pretrained
from dllm_lab.training.checkpoints import load_checkpoint


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Rebuild the model from the run config stored in the checkpoint, load its weights, and export
    weights + tokenizer + ``config.yaml`` + training curve to ``out_dir``."""
    ckpt = load_checkpoint(ckpt_path)
    run_config = (ckpt.get("hyper_parameters") or {}).get("run_config")
    if not run_config:
        raise ValueError(f"{ckpt_path} has no run_config in its hyper-parameters; was it written by dllm-train?")
    lm = model_from_run_config(run_config)
    state = {k.removeprefix("lm."): v for k, v in ckpt["state_dict"].items()}
    lm.load_state_dict(state)
    curve = next((s.get("rows") for k, s in ckpt.get("callbacks", {}).items() if "TrainingCurve" in k), None)
    config_yaml = yaml.safe_dump(run_config, sort_keys=False)
    config_yaml += f"# exported from {Path(ckpt_path).name} at step {ckpt.get('global_step')}\n"
    return export_pretrained(lm, out_dir, config_yaml, curve)
