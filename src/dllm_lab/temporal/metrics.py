"""Torchmetrics for temporal signals (Time Is a Feature, Wang et al. 2025, arXiv 2508.09138).

Every class is updated with a batch of ``B`` trajectories, ``update(step_answers, step_correct)``:
per sample the parsed answer of each step (``None`` = unparsable) and whether it is correct. All states
are sums and counts with ``dist_reduce_fx="sum"`` (no lists), so ``compute()`` under DDP equals the
single-process value. Metrics never return NaN: an empty metric computes 0, and a mean over an empty
group (e.g. TSE of correct samples when none is correct) is left out of the returned dict.

Lifecycle under Lightning: make one object per stage, and call ``reset()`` in ``on_<stage>_epoch_start``
(also after the sanity check). Under ``ddp_spawn``, tensors created in ``__init__`` live in memory shared
by the spawned workers; ``reset()`` re-creates every state as a fresh tensor in each process.

In a ``MetricCollection`` pass ``compute_groups=False`` (as :func:`temporal_metric_collection` does):
torchmetrics otherwise merges metrics whose states happen to be equal after the first update, e.g.
two TCV weightings that agreed on the first batch, and they would share counts from then on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection

from dllm_lab.temporal.settings import TemporalSettings
from dllm_lab.temporal.signals import (
    TSE_ALPHA,
    TSE_SKIP_RATIO,
    VOTE_ALPHA,
    Equivalence,
    answer_changes,
    as_trajectory,
    check_base,
    check_trajectories,
    check_weighting,
    correct_then_wrong,
    ever_correct,
    first_kept_step,
    temporal_entropy_and_confidence,
    temporal_vote_index,
)

StepAnswers = Sequence[Sequence[Any]]  # (B, S) parsed answers, None = unparsable
StepCorrect = Sequence[Sequence[bool]]  # (B, S) correctness of each step's answer


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` as float64, 0 when ``den`` is 0 (never NaN)."""
    return num.to(torch.float64) / den.clamp_min(1).to(torch.float64)


class _TemporalMetric(Metric):
    is_differentiable = False
    full_state_update = False

    def _add_count(self, name: str) -> None:
        self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _add_sum(self, name: str) -> None:
        self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")


class TemporalVoteAccuracy(_TemporalMetric):
    """Accuracy of temporal self-consistency voting with one weighting (``fixed``, ``linear``, ``exp``).

    A vote is scored by the correctness of the step whose answer it returns; no vote counts as wrong.
    ``metric_name`` is the MLflow-safe ``tcv_<weighting>_accuracy``.
    """

    higher_is_better = True

    def __init__(
        self,
        weighting: str = "exp",
        alpha: float = VOTE_ALPHA,
        equivalent: Equivalence | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_weighting(1, weighting, alpha)
        self.weighting, self.alpha, self.equivalent = weighting, float(alpha), equivalent
        self._add_count("vote_correct")
        self._add_count("vote_total")

    @property
    def metric_name(self) -> str:
        return f"tcv_{self.weighting}_accuracy"

    def update(self, step_answers: StepAnswers, step_correct: StepCorrect) -> None:
        answers, correct = check_trajectories(step_answers, step_correct)
        hits = 0
        for a, c in zip(answers, correct, strict=True):
            index = temporal_vote_index(a, self.weighting, self.alpha, self.equivalent)
            hits += index is not None and c[index]
        self.vote_correct += hits
        self.vote_total += len(answers)

    def compute(self) -> torch.Tensor:
        return _ratio(self.vote_correct, self.vote_total)


class EverPass(_TemporalMetric):
    """EverPass@1|t: the share of samples whose answer is correct at some denoising step."""

    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_count("ever_correct")
        self._add_count("ever_total")

    def update(self, step_answers: StepAnswers, step_correct: StepCorrect) -> None:
        _, correct = check_trajectories(step_answers, step_correct)
        self.ever_correct += sum(ever_correct(c) for c in correct)
        self.ever_total += len(correct)

    def compute(self) -> torch.Tensor:
        return _ratio(self.ever_correct, self.ever_total)


class CorrectThenWrong(_TemporalMetric):
    """The share of samples correct at some step but wrong at the final step (over all samples)."""

    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_count("ctw_count")
        self._add_count("ctw_total")

    def update(self, step_answers: StepAnswers, step_correct: StepCorrect) -> None:
        _, correct = check_trajectories(step_answers, step_correct)
        self.ctw_count += sum(correct_then_wrong(c) for c in correct)
        self.ctw_total += len(correct)

    def compute(self) -> torch.Tensor:
        return _ratio(self.ctw_count, self.ctw_total)


class AnswerChanges(_TemporalMetric):
    """Mean number of answer changes per sample (unparsable steps skipped, see ``answer_changes``)."""

    higher_is_better = False

    def __init__(self, equivalent: Equivalence | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.equivalent = equivalent
        self._add_count("changes_sum")
        self._add_count("changes_total")

    def update(self, step_answers: StepAnswers, step_correct: StepCorrect | None = None) -> None:
        batch = as_trajectory(step_answers, "the batch of step_answers")
        answers = [as_trajectory(a, f"step_answers[{i}]") for i, a in enumerate(batch)]
        if step_correct is not None:  # not needed here; checked so a MetricCollection fails the same way
            check_trajectories(answers, step_correct)
        self.changes_sum += sum(answer_changes(a, self.equivalent) for a in answers)
        self.changes_total += len(answers)

    def compute(self) -> torch.Tensor:
        return _ratio(self.changes_sum, self.changes_total)


class TemporalSemanticEntropy(_TemporalMetric):
    """Mean TSE and normalised confidence, overall and split by final-step correctness.

    ``compute()`` returns MLflow-safe keys ``{prefix}_mean``, ``{prefix}_confidence_mean``,
    ``{prefix}_correct_mean`` and ``{prefix}_wrong_mean`` (the last two only when the group is
    non-empty). A sample is "correct" when its final step's answer is, i.e. the answer decoding outputs.
    """

    higher_is_better = False

    def __init__(
        self,
        skip_ratio: float = TSE_SKIP_RATIO,
        weighting: str = "exp",
        alpha: float = TSE_ALPHA,
        equivalent: Equivalence | None = None,
        base: float = math.e,
        prefix: str = "tse",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_weighting(1, weighting, alpha)
        check_base(base)
        first_kept_step(1, skip_ratio)
        self.skip_ratio, self.weighting, self.alpha = float(skip_ratio), weighting, float(alpha)
        self.equivalent, self.base, self.prefix = equivalent, float(base), prefix
        for name in ("tse_sum", "confidence_sum", "tse_correct_sum", "tse_wrong_sum"):
            self._add_sum(name)
        for name in ("tse_total", "tse_correct_total", "tse_wrong_total"):
            self._add_count(name)

    def update(self, step_answers: StepAnswers, step_correct: StepCorrect) -> None:
        answers, correct = check_trajectories(step_answers, step_correct)
        sums = {"all": 0.0, "conf": 0.0, "correct": 0.0, "wrong": 0.0}
        n_correct = 0
        for a, c in zip(answers, correct, strict=True):
            tse, confidence = temporal_entropy_and_confidence(
                a, self.skip_ratio, self.weighting, self.alpha, self.equivalent, self.base
            )
            sums["all"] += tse
            sums["conf"] += confidence
            sums["correct" if c[-1] else "wrong"] += tse
            n_correct += c[-1]
        self.tse_sum += sums["all"]
        self.confidence_sum += sums["conf"]
        self.tse_correct_sum += sums["correct"]
        self.tse_wrong_sum += sums["wrong"]
        self.tse_total += len(answers)
        self.tse_correct_total += n_correct
        self.tse_wrong_total += len(answers) - n_correct

    def compute(self) -> dict[str, torch.Tensor]:
        p = self.prefix
        out = {
            f"{p}_mean": _ratio(self.tse_sum, self.tse_total),
            f"{p}_confidence_mean": _ratio(self.confidence_sum, self.tse_total),
        }
        if self.tse_correct_total > 0:
            out[f"{p}_correct_mean"] = _ratio(self.tse_correct_sum, self.tse_correct_total)
        if self.tse_wrong_total > 0:
            out[f"{p}_wrong_mean"] = _ratio(self.tse_wrong_sum, self.tse_wrong_total)
        return out


def temporal_metric_collection(
    equivalent: Equivalence | None = None, settings: TemporalSettings | None = None
) -> MetricCollection:
    """Every temporal metric in one object, ``update(step_answers, step_correct)``; ``compute()`` gives
    ``tcv_<w>_accuracy`` per weighting, ``everpass``, ``correct_then_wrong``, ``answer_changes`` and the
    ``tse_*`` keys of :class:`TemporalSemanticEntropy`. ``equivalent``: the task's ``is_equivalent``."""
    cfg = settings or TemporalSettings()
    metrics: dict[str, Metric] = {}
    for w in cfg.vote_weightings:
        vote = TemporalVoteAccuracy(w, cfg.vote_alpha, equivalent)
        metrics[vote.metric_name] = vote
    metrics["everpass"] = EverPass()
    metrics["correct_then_wrong"] = CorrectThenWrong()
    metrics["answer_changes"] = AnswerChanges(equivalent)
    metrics["tse"] = TemporalSemanticEntropy(cfg.tse_skip_ratio, cfg.tse_weighting, cfg.tse_alpha, equivalent,
                                             cfg.tse_base)
    return MetricCollection(metrics, compute_groups=False)
