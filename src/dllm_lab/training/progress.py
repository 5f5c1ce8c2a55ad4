"""Live progress: one rich display per run, on rank 0.

Two kinds of row:

- the stage: ``eval arith`` batches of a task's evaluation set, or ``RL updates`` counted against
  ``trainer.max_steps`` with the mean reward of the last rollout (``SFT steps`` with the loss);
- the decode in flight (an evaluation batch, a rollout, a validation batch): tokens committed out of the
  masked ones, the step, tokens/s and the time left. It is what moves during a long decode, when a task has
  only one batch.

:class:`LiveProgress` is a Lightning progress bar (it replaces the default one); :func:`decode_progress`
gives a module the decoding callback that feeds the second row, or nothing when the run has no live display.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dllm_lab.decoding import DecodeCallback
from dllm_lab.decoding.state import DecodeOutput, DecodeState


class _Rate(ProgressColumn):
    """``<n> tok/s`` for a decode row (rich's speed estimate over the recent steps); blank for stage rows."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit")
        if not unit or not task.speed:
            return Text("")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


class _DecodeRow(DecodeCallback):
    """Feeds :class:`LiveProgress`'s decode row: tokens committed per step out of those masked at the start."""

    name = "progress"

    def __init__(self, bar: LiveProgress) -> None:
        self.bar = bar

    def on_decode_start(self, state: DecodeState) -> None:
        self.bar.decode_started(int(state.masked.sum()) if state.masked is not None else 0, state.total_steps)

    def on_step(self, state: DecodeState) -> None:
        committed = int(state.committed.sum()) if state.committed is not None else 0
        self.bar.decode_advanced(committed, state.step + 1)

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        self.bar.decode_finished()


class LiveProgress(ProgressBar):
    """The run's progress display (rank 0 only: Lightning disables it elsewhere).

    ``console``: where to draw (default: rich's console on stdout; a non-terminal gets the final state of each
    stage row only). Stage rows of finished test/validate stages stay on screen; decode rows and the
    validation rows inside a fit go when done."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 4) -> None:
        super().__init__()
        self._enabled = True
        self._console = console
        self._refresh = refresh_per_second
        self._progress: Progress | None = None
        self._stage: TaskID | None = None
        self._train: TaskID | None = None
        self._decode: TaskID | None = None
        self._decode_steps: int | None = None
        self._stage_transient = False  # the stage row goes when done (validation inside a fit)
        self._current_description: str | None = None
        self.decode_callback = _DecodeRow(self)

    # -- Lightning's progress-bar interface -----------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.console.print(*args, **kwargs)
        else:
            print(*args, **kwargs)

    # -- the display ---------------------------------------------------------------------------------
    def _start(self) -> Progress | None:
        if not self._enabled:
            return None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[progress.description]{task.description}"), BarColumn(bar_width=28),
                MofNCompleteColumn(), TextColumn("{task.fields[info]}"), _Rate(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=self._console,
                refresh_per_second=self._refresh, transient=False,
            )
            self._progress.start()
        return self._progress

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = self._stage = self._train = self._decode = None

    def _stage_row(self, description: str, total: float | None, transient: bool) -> None:
        progress = self._start()
        if progress is None:
            return
        if self._stage is not None and self._stage_transient:
            progress.remove_task(self._stage)
        total = None if total is None or not math.isfinite(total) else total
        self._stage = progress.add_task(description, total=total, info="", unit=None)
        self._stage_transient = transient

    # -- the decode row (called by the decoding callback) --------------------------------------------
    def decode_started(self, masked: int, total_steps: int | None) -> None:
        progress = self._start()
        if progress is None:
            return
        self._decode_steps = total_steps
        if self._decode is not None:
            progress.remove_task(self._decode)
        self._decode = progress.add_task("  decode", total=max(1, masked), info="step 0", unit="tok")

    def decode_advanced(self, committed: int, step: int) -> None:
        if self._progress is None or self._decode is None:
            return
        of = f"/{self._decode_steps}" if self._decode_steps else ""
        self._progress.update(self._decode, advance=committed, info=f"step {step}{of}")

    def decode_finished(self) -> None:
        if self._progress is not None and self._decode is not None:
            self._progress.remove_task(self._decode)
        self._decode = None

    # -- stages ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        progress = self._start()
        if progress is None:
            return
        label = "RL updates" if not pl_module.automatic_optimization else "train steps"
        self._train = progress.add_task(label, total=trainer.max_steps, completed=trainer.global_step, info="",
                                        unit=None)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._progress is None or self._train is None:
            return
        metrics = trainer.callback_metrics
        shown = [(key, label) for key, label in (("train/reward", "reward"), ("train/loss", "loss"))
                 if key in metrics]
        key, label = shown[0] if shown else (None, "")
        info = f"{label} {float(metrics[key]):.3f}" if key else ""
        self._progress.update(self._train, completed=trainer.global_step, info=info)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_start(trainer, batch, batch_idx, dataloader_idx, "validate", trainer.num_val_batches,
                          transient=self._train is not None)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_end()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None and self._stage is not None and self._stage_transient:
            self._progress.remove_task(self._stage)
            self._stage = None
        if self._train is None:  # a validate() of its own
            self._stop()

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._batch_start(trainer, batch, batch_idx, dataloader_idx, "eval", trainer.num_test_batches, False)

    def on_predict_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        self._batch_start(trainer, batch, batch_idx, dataloader_idx, "predict", trainer.num_predict_batches, False)

    on_test_batch_end = on_predict_batch_end = on_validation_batch_end  # each finished batch advances its row

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    on_predict_end = on_test_end

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop()

    def _batch_start(self, trainer: L.Trainer, batch: Any, batch_idx: int, dataloader_idx: int, verb: str,
                     totals: list[int | float], transient: bool) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        task = batch["tasks"][0] if isinstance(batch, dict) and batch.get("tasks") else f"set {dataloader_idx}"
        description = f"{verb} {task}"
        if self._stage is None or self._current_description != description:
            total = totals[dataloader_idx] if dataloader_idx < len(totals) else None
            self._stage_row(description, total, transient)
            self._current_description = description
        if self._progress is not None and self._stage is not None:
            self._progress.update(self._stage, completed=batch_idx, info="batches")

    def _batch_end(self) -> None:
        if self._progress is not None and self._stage is not None:
            self._progress.advance(self._stage)


def decode_progress(module: L.LightningModule) -> list[DecodeCallback]:
    """The decoding callback of the run's live display, when ``module`` runs under a Trainer that has one."""
    trainer = getattr(module, "_trainer", None)
    bar = getattr(trainer, "progress_bar_callback", None) if trainer is not None else None
    if isinstance(bar, LiveProgress) and bar.is_enabled:
        return [bar.decode_callback]
    return []


__all__ = ["LiveProgress", "decode_progress"]
