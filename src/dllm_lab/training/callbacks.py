"""Lightning callbacks for training runs: self-describing exports, the training curve, a checkpoint on the
way out (SIGTERM, Ctrl-C), and the fall-back to the last good checkpoint after a divergence."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def export_pretrained(lm, directory: str | Path, config_yaml: str, curve: list[dict[str, Any]] | None = None) -> Path:
    """Write weights + tokenizer (``save_pretrained``), the resolved ``config.yaml`` and the curve."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(directory)
    (directory / "config.yaml").write_text(config_yaml)
    if curve:
        keys = sorted({k for row in curve for k in row}, key=lambda k: (k != "step", k))
        with (directory / "training_curve.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(curve)
    return directory


class TrainingCurve(L.Callback):
    """Collects ``train/loss`` and ``val/loss`` by step (rank 0) for the exported training curve."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % max(1, trainer.log_every_n_steps) == 0 and "train/loss" in trainer.callback_metrics:
            self.rows.append({"step": step, "train_loss": float(trainer.callback_metrics["train/loss"])})

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            self.rows.append({"step": trainer.global_step, "val_loss": float(trainer.callback_metrics["val/loss"])})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))


class MLflowRunId(L.Callback):
    """Stores the MLflow run id in each checkpoint so a resumed job continues the same run."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        if run_id:
            checkpoint["mlflow_run_id"] = run_id


INTERRUPTIONS = (KeyboardInterrupt, SIGTERMException, SystemExit)


class GracefulExit(L.Callback):
    """A checkpoint on the way out. SIGTERM (a scheduler's stop, ``kill``) and a first Ctrl-C both let the
    current step finish, then ``checkpoints/interrupted.ckpt`` is written and the run is marked KILLED; a
    second Ctrl-C stops at once. Resume with ``ckpt_path=<dir>/checkpoints/interrupted.ckpt``."""

    def __init__(self, checkpoint_dir: str | Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self._previous: Any = None
        self.saved: Path | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job (nohup, &): keep ignoring Ctrl-C
            return

        def first_ctrl_c(signum, frame) -> None:
            log.warning("Ctrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to stop now)")
            trainer._signal_connector.received_sigterm = True  # Lightning then stops after the step, as on SIGTERM
            signal.signal(signal.SIGINT, signal.default_int_handler)

        self._previous = signal.signal(signal.SIGINT, first_ctrl_c)

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if not isinstance(exception, INTERRUPTIONS) or trainer.global_step == 0:
            return
        path = self.checkpoint_dir / "interrupted.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # the full state: optimizer, data position, callbacks
        self.saved = path
        if trainer.is_global_zero:
            log.warning("interrupted at step %d: saved %s; resume with ckpt_path=%s", trainer.global_step, path, path)


def _step_of(path: Path) -> int | None:
    match = re.search(r"step=(\d+)", path.name)
    return int(match.group(1)) if match else None


class DivergenceGuard(L.Callback):
    """After a non-finite loss, ``last.ckpt`` becomes the last *good* checkpoint.

    The loss that turned NaN at step ``k`` was computed from the weights after ``k`` updates, so the
    checkpoint of step ``k`` (and any later one) holds diverged weights; the newest with a smaller step is
    the last whose weights gave a finite loss. It is copied to ``last.ckpt`` (and ``last-good.ckpt``), the
    diverged ones are renamed ``*.diverged``, and :attr:`message` says which to resume from.
    """

    def __init__(self, checkpoint_dir: str | Path) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.message = ""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, FloatingPointError) or not trainer.is_global_zero:
            return
        bad_from = trainer.global_step
        steps = {p: _step_of(p) for p in self.checkpoint_dir.glob("*.ckpt")}
        good = [p for p, s in steps.items() if s is not None and s < bad_from]
        for path, step in steps.items():
            if step is not None and step >= bad_from:
                path.rename(path.with_name(path.name + ".diverged"))
        last = self.checkpoint_dir / "last.ckpt"
        if good:
            best = max(good, key=lambda p: steps[p])
            for target in (last, self.checkpoint_dir / "last-good.ckpt"):
                shutil.copyfile(best, target)
            self.message = (f"the last good checkpoint is {best.name} (step {steps[best]}), now also last.ckpt; "
                            f"resume with ckpt_path={last} after changing the setting")
        else:
            if last.exists():
                last.rename(last.with_name("last.ckpt.diverged"))
            self.message = f"no checkpoint from before step {bad_from} exists; start again"
        log.error("non-finite loss at step %d: %s", bad_from, self.message)
