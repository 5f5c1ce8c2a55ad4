"""Where the project lives (configs, checkpoints, the default MLflow store)."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """``$DLLM_LAB_ROOT`` if set, else the nearest parent of this file holding ``pyproject.toml``
    and ``configs/`` (a source checkout, the intended way to use a template), else the current dir."""
    env = os.environ.get("DLLM_LAB_ROOT")
    if env:
        return Path(env).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").exists() and (parent / "configs").is_dir():
            return parent
    return Path.cwd().resolve()


def config_dir() -> Path:
    return project_root() / "configs"


def job_id() -> str:
    """What tells this job from one started in the same second: the launcher's job id when there is one
    (SLURM, torchrun, shared by the job's ranks), else this process id."""
    for key in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        if os.environ.get(key) and os.environ[key] != "none":
            return os.environ[key]
    return str(os.getpid())


def ensure_root_env() -> Path:
    """Export ``DLLM_LAB_ROOT`` so configs can say ``${oc.env:DLLM_LAB_ROOT}``, and ``DLLM_LAB_JOB_ID``
    (:func:`job_id`), which makes each job's output folder its own."""
    root = project_root()
    os.environ["DLLM_LAB_ROOT"] = str(root)
    os.environ["DLLM_LAB_JOB_ID"] = job_id()
    return root
