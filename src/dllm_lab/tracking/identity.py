"""What tells a run from its neighbours on a shared dashboard: its name, tags, params and experiment description.

- The name is the experiment plus the command-line overrides that changed it (``quickstart decoder=med
  data.num_eval=16``), so that two runs of one experiment never share a name in the runs table, a chart
  legend or a compare page. Overrides of where a run logs or writes (``logger.*``, ``paths.*``, ``hydra.*``,
  ``sweep.output_dir``) or of how many threads it uses do not name it.
- Tags: ``preset.<group>`` for each config group's choice (``preset.decoder=med``), the overrides, the git
  commit and whether the work tree had uncommitted changes, the study (the experiment) and the seed: one
  click groups a dashboard by decoder or by arm.
- Params: only the groups the entry point reads. An eval run logs no optimizer, schedule or SFT-noise
  settings.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_GROUPS = ("decoder", "algo", "model", "trainer", "data", "temporal", "logger")
UNNAMED_PREFIXES = ("hydra.", "logger.", "logger=", "paths.", "run_name=", "tags.", "print_table=", "verbose=",
                    "eval_before_fit=", "experiment=", "sweep.output_dir=", "trainer.num_threads=")
MAX_NAME = 120  # the runs table and chart legends stay readable; the tag `overrides` keeps every override

# settings only a training run reads (an eval run does not log them)
TRAIN_ONLY = ("algo", "callbacks", "ckpt_path", "export_dir", "eval_after_fit", "validate_before_fit",
              "eval_before_fit")
TRAIN_ONLY_TRAINER = ("max_steps", "val_check_interval", "limit_val_batches", "gradient_clip_val",
                      "accumulate_grad_batches", "log_every_n_steps", "checkpoint_every_n_steps")
TRAIN_ONLY_DATA = ("batch_size", "weights", "train_sources", "train_split", "num_val_batches",
                   "min_response_length", "long_response_length", "long_response_prob", "block_noise_prob",
                   "block_noise_length", "block_noise_cut", "infill_prob", "infill_gen_lengths")


@dataclass(frozen=True)
class RunIdentity:
    """name: the default MLflow run name; tags: what the run was made of; study: the experiment it belongs to."""

    name: str
    study: str
    choices: dict[str, str] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def run_name(base: str, overrides: list[str] | tuple[str, ...]) -> str:
    """``base`` plus the overrides that change what runs; long lists end in ``(+N more)``."""
    shown = [o.removeprefix("+") for o in overrides if not o.removeprefix("+").startswith(UNNAMED_PREFIXES)]
    name = base
    for i, item in enumerate(shown):
        rest = len(shown) - i - 1
        candidate = f"{name} {item}"
        if len(candidate) > MAX_NAME - (len(f" (+{rest} more)") if rest else 0):
            return f"{name} (+{len(shown) - i} more)"
        name = candidate
    return name


def git_state(root: Path) -> tuple[str, bool | None]:
    """The commit and whether tracked files differ from it (``None`` when git cannot tell)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status.strip())


def run_identity(config: dict[str, Any], choices: dict[str, str], overrides: list[str], root: Path) -> RunIdentity:
    """The name and tags of a run of ``config`` (resolved, plain) composed with ``choices`` and ``overrides``."""
    study = choices.get("experiment") or str(config.get("task_name") or config.get("entry") or "run")
    if study == "null":
        study = str(config.get("task_name") or "run")
    commit, dirty = git_state(root)
    tags = {f"preset.{group}": choices[group] for group in PRESET_GROUPS if group in choices}
    tags.update({
        "study": study,
        "seed": str(config.get("seed", "")),
        "overrides": " ".join(overrides) or "(none)",
        "git_commit": commit,
        "git_dirty": "unknown" if dirty is None else str(dirty).lower(),
    })
    return RunIdentity(run_name(study, overrides), study, dict(choices), tuple(overrides), tags)


def run_params(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The part of ``config`` that ``stage`` reads (``train``: all of it)."""
    if stage == "train":
        return config
    out = {k: v for k, v in config.items() if k not in TRAIN_ONLY}
    if isinstance(out.get("trainer"), dict):
        out["trainer"] = {k: v for k, v in out["trainer"].items() if k not in TRAIN_ONLY_TRAINER}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k not in TRAIN_ONLY_DATA}
    return out


def experiment_description(choices: dict[str, str], entry: str, config_root: Path) -> str | None:
    """The header comment of the experiment's config file (else of the entry config), as Markdown."""
    candidates = []
    if choices.get("experiment"):
        candidates.append(config_root / "experiment" / f"{choices['experiment']}.yaml")
    candidates.append(config_root / f"{entry}.yaml")
    for path in candidates:
        if not path.is_file():
            continue
        lines = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            text = line.lstrip("#").strip()
            if not text.startswith("@package"):
                lines.append(text)
        if any(lines):
            return f"{' '.join(lines).strip()}\n\nConfig: `configs/{path.relative_to(config_root)}`"
    return None
