"""Temporal signals of masked diffusion decoding as pure functions (docs/methods.md, "Temporal signals").

From "Time Is a Feature: Exploiting Temporal Dynamics in Diffusion Language Models" (Wang et al. 2025,
arXiv 2508.09138): the answers a model holds at intermediate denoising steps carry signal the final step
throws away. Temporal self-consistency voting (TCV) picks the answer with the largest step-weighted vote;
temporal semantic entropy (TSE) measures how unstable the answer is over the late steps.

Every function works on one sample's *trajectory*: a sequence of per-step parsed answers for steps
``s = 0..S-1`` (``None`` where nothing parsed). ``equivalent(a, b) -> bool`` clusters answers (the task's
``is_equivalent``); it defaults to ``a == b``.

Choices where the paper leaves room (**[ours]**):

- Weights use the step's index ``s`` among all ``S`` steps: ``fixed`` 1, ``linear`` (s+1)/S, ``exp``
  exp(alpha*s/S). TSE's skip does not re-index: kept steps keep their original weights. Only relative
  weights matter, so internally they are rescaled to make the largest valid weight 1 (no overflow for a
  large ``alpha``). ``alpha`` must be >= 0 so that the final step always has the largest weight.
- Clustering is greedy in step order: an answer joins the first cluster whose first member
  (representative) satisfies ``equivalent(answer, representative)``. Identical hashable answers reuse
  the cluster without calling ``equivalent`` (which is assumed reflexive), so math-verify runs once per
  distinct answer and cluster, not once per step.
- Votes: unparsable steps cast no vote; no vote at all gives ``None``. Ties (relative tolerance 1e-9,
  so float summation order cannot break them) go to the cluster seen latest; the vote returns that
  cluster's latest member, i.e. the answer of step :func:`temporal_vote_index`.
- TSE drops the first ``floor(skip_ratio * S)`` steps, as the released code does
  (``answers[int(T * ratio):]``), but always keeps at least the final step. Unparsable kept
  steps are left out of the cluster masses (as in the paper); with no parsable kept step,
  ``TSE = log(kept steps)``, the maximum. Confidence ``1 - TSE / log(kept)`` is 0 with no parsable
  kept step and 1 when exactly one step is kept and it parsed (no 0/0).
- Answer changes skip unparsable steps: each parsed answer is compared with the previous *parsed*
  answer, so flickering into unparsable text and back to the same answer is not a change.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

Equivalence = Callable[[Any, Any], bool]

WEIGHTINGS = ("fixed", "linear", "exp")
VOTE_ALPHA = 5.0  # TCV's exp weighting (paper default)
TSE_ALPHA = 12.8  # TSE's exp weighting (paper default)
TSE_SKIP_RATIO = 0.5
_TIE_RTOL = 1e-9


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def as_trajectory(step_answers: Sequence[Any], name: str = "step_answers") -> list[Any]:
    """``step_answers`` as a list, raising a clear error when it is not a non-empty trajectory."""
    if isinstance(step_answers, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of per-step answers, got a {type(step_answers).__name__}; "
            "wrap a single answer as [answer]"
        )
    try:
        answers = list(step_answers)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of per-step answers, got {type(step_answers).__name__}") from None
    if not answers:
        raise ValueError(
            f"empty trajectory: {name} has no steps; record at least the final decoding step of every sample"
        )
    return answers


def check_trajectories(
    step_answers: Sequence[Sequence[Any]], step_correct: Sequence[Sequence[bool]]
) -> tuple[list[list[Any]], list[list[bool]]]:
    """Validate a batch of ``B`` trajectories and their per-step correctness; returns them as lists.

    Raises ``ValueError`` for an empty trajectory or when the numbers of samples or of steps differ.
    """
    answers = as_trajectory(step_answers, "the batch of step_answers")  # B samples, at least one
    correct = as_trajectory(step_correct, "the batch of step_correct")
    if len(answers) != len(correct):
        raise ValueError(
            f"mismatched lengths: {len(answers)} samples of step_answers but {len(correct)} of step_correct; "
            "pass one correctness trajectory per sample"
        )
    out_a, out_c = [], []
    for i, (a, c) in enumerate(zip(answers, correct, strict=True)):
        a = as_trajectory(a, f"step_answers[{i}]")
        c = [bool(x) for x in as_trajectory(c, f"step_correct[{i}]")]
        if len(a) != len(c):
            raise ValueError(
                f"mismatched lengths: sample {i} has {len(a)} step answers but {len(c)} correctness flags; "
                "pass one flag per step"
            )
        out_a.append(a)
        out_c.append(c)
    return out_a, out_c


def check_weighting(num_steps: int, weighting: str, alpha: float) -> None:
    """Raise ``ValueError`` unless ``weighting``/``alpha`` are valid step weights for ``num_steps >= 1`` steps."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r}: choose one of {WEIGHTINGS}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha={alpha!r} must be a finite number >= 0 (the final step must weigh most)")
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")


def _log_weights(num_steps: int, weighting: str, alpha: float) -> list[float]:
    """log f(s) for s = 0..S-1 (see :func:`step_weights`)."""
    check_weighting(num_steps, weighting, alpha)
    S = num_steps
    if weighting == "fixed":
        return [0.0] * S
    if weighting == "linear":
        return [math.log((s + 1) / S) for s in range(S)]
    return [alpha * s / S for s in range(S)]


def step_weights(num_steps: int, weighting: str = "exp", alpha: float = VOTE_ALPHA) -> list[float]:
    """The paper's step weights f(s), s = 0..S-1 (Time Is a Feature; docs/methods.md "Temporal signals").

    ``fixed``: 1; ``linear``: (s+1)/S; ``exp``: exp(alpha*s/S). ``alpha`` is ignored unless ``exp``.
    """
    return [math.exp(w) for w in _log_weights(num_steps, weighting, alpha)]


def _relative_weights(num_steps: int, weighting: str, alpha: float, steps: Sequence[int]) -> dict[int, float]:
    """Weights of ``steps`` divided by the largest of them (so the largest is exactly 1)."""
    log_w = _log_weights(num_steps, weighting, alpha)
    top = max(log_w[s] for s in steps)
    return {s: math.exp(log_w[s] - top) for s in steps}


def cluster_answers(step_answers: Sequence[Any], equivalent: Equivalence | None = None) -> list[int | None]:
    """Cluster label per step (0, 1, ... in order of first appearance), ``None`` for unparsable steps."""
    answers = as_trajectory(step_answers)
    eq = equivalent or _equal
    representatives: list[Any] = []
    seen: dict[Any, int] = {}  # hashable answer -> label, so identical answers skip ``equivalent``
    labels: list[int | None] = []
    for answer in answers:
        if answer is None:
            labels.append(None)
            continue
        try:
            label = seen.get(answer)
        except TypeError:  # unhashable answer: always compare
            label = None
        if label is None:
            label = next((k for k, rep in enumerate(representatives) if eq(answer, rep)), None)
            if label is None:
                label = len(representatives)
                representatives.append(answer)
            with contextlib.suppress(TypeError):
                seen[answer] = label
        labels.append(label)
    return labels


def temporal_vote_index(
    step_answers: Sequence[Any],
    weighting: str = "exp",
    alpha: float = VOTE_ALPHA,
    equivalent: Equivalence | None = None,
) -> int | None:
    """The step whose answer TCV returns (the latest member of the winning cluster), or ``None``.

    Its correctness is the voted answer's correctness, so callers need no gold answer to score a vote.
    """
    answers = as_trajectory(step_answers)
    labels = cluster_answers(answers, equivalent)
    valid = [s for s, label in enumerate(labels) if label is not None]
    if not valid:
        return None
    weights = _relative_weights(len(answers), weighting, alpha, valid)
    mass: dict[int, float] = {}
    latest: dict[int, int] = {}
    for s in valid:
        label = labels[s]
        mass[label] = mass.get(label, 0.0) + weights[s]
        latest[label] = s
    best = max(mass.values())
    tied = [label for label, m in mass.items() if m >= best * (1.0 - _TIE_RTOL)]
    return latest[max(tied, key=latest.__getitem__)]  # ties: the cluster seen latest wins [ours]


def temporal_vote(
    step_answers: Sequence[Any],
    weighting: str = "exp",
    alpha: float = VOTE_ALPHA,
    equivalent: Equivalence | None = None,
) -> Any | None:
    """Temporal self-consistency voting: ``argmax_a sum_s f(s) * 1[parse_s ~ a]`` (Time Is a Feature).

    ``step_answers``: (S,) parsed answers, ``None`` = no vote. Returns the voted answer, ``None`` when no
    step parsed. ``weighting``: ``fixed`` | ``linear`` | ``exp`` (``alpha``, default 5).
    """
    answers = as_trajectory(step_answers)
    index = temporal_vote_index(answers, weighting, alpha, equivalent)
    return None if index is None else answers[index]


def first_kept_step(num_steps: int, skip_ratio: float) -> int:
    """The first step TSE keeps: ``floor(skip_ratio * S)`` steps are dropped, as in the released code of
    Time Is a Feature (``answers[int(T * ratio):]``), but the final step is always kept.

    >>> first_kept_step(7, 0.5)   # 3 of 7 steps dropped (a ceiling would drop 4)
    3
    """
    if not (isinstance(skip_ratio, (int, float)) and 0.0 <= skip_ratio <= 1.0):
        raise ValueError(f"skip_ratio={skip_ratio!r} must be in [0, 1] (0.5 keeps the second half of the steps)")
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    return min(int(skip_ratio * num_steps), num_steps - 1)


def _entropy_nats(
    step_answers: Sequence[Any], skip_ratio: float, weighting: str, alpha: float, equivalent: Equivalence | None
) -> tuple[float, int, bool]:
    """(TSE in nats, number of kept steps, whether any kept step parsed)."""
    answers = as_trajectory(step_answers)
    S = len(answers)
    first = first_kept_step(S, skip_ratio)
    kept = S - first
    labels = cluster_answers(answers[first:], equivalent)
    valid = [first + i for i, label in enumerate(labels) if label is not None]
    if not valid:
        return math.log(kept), kept, False  # maximum entropy [ours: the reference used the batch size]
    weights = _relative_weights(S, weighting, alpha, valid)
    mass: dict[int, float] = {}
    for s in valid:
        label = labels[s - first]
        mass[label] = mass.get(label, 0.0) + weights[s]
    total = sum(mass.values())  # >= 1: the largest relative weight is 1
    # a cluster whose weights underflowed to 0 (huge alpha) contributes 0 log 0 = 0
    entropy = -sum(m / total * math.log(m / total) for m in mass.values() if m > 0.0)
    return (entropy if entropy > 0.0 else 0.0), kept, True


def check_base(base: float) -> None:
    """Raise ``ValueError`` unless ``base`` is a valid logarithm base for TSE."""
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base={base!r} must be a positive number other than 1 (math.e for nats, 2 for bits)")


def temporal_entropy_and_confidence(
    step_answers: Sequence[Any],
    skip_ratio: float = TSE_SKIP_RATIO,
    weighting: str = "exp",
    alpha: float = TSE_ALPHA,
    equivalent: Equivalence | None = None,
    base: float = math.e,
) -> tuple[float, float]:
    """``(TSE, normalised confidence)`` with one clustering pass; see the two functions below."""
    check_base(base)
    entropy, kept, parsed = _entropy_nats(step_answers, skip_ratio, weighting, alpha, equivalent)
    if not parsed:
        confidence = 0.0
    elif kept == 1:
        confidence = 1.0  # log(1) = 0: a single parsed kept step is as certain as it gets
    else:
        confidence = min(1.0, max(0.0, 1.0 - entropy / math.log(kept)))
    return entropy / math.log(base), confidence


def temporal_semantic_entropy(
    step_answers: Sequence[Any],
    skip_ratio: float = TSE_SKIP_RATIO,
    weighting: str = "exp",
    alpha: float = TSE_ALPHA,
    equivalent: Equivalence | None = None,
    base: float = math.e,
) -> float:
    """Temporal semantic entropy ``-sum_k p_k log p_k`` over the kept steps (Time Is a Feature).

    ``p_k`` is the weight share of cluster ``k`` among parsed kept steps (:func:`first_kept_step`).
    ``base``: ``math.e`` for nats (default), 2 for bits. No parsable kept step gives ``log(kept)``.
    """
    return temporal_entropy_and_confidence(step_answers, skip_ratio, weighting, alpha, equivalent, base)[0]


def temporal_confidence(
    step_answers: Sequence[Any],
    skip_ratio: float = TSE_SKIP_RATIO,
    weighting: str = "exp",
    alpha: float = TSE_ALPHA,
    equivalent: Equivalence | None = None,
) -> float:
    """Normalised confidence ``c = 1 - TSE / log(kept steps)`` in [0, 1] (base-independent).

    0 when no kept step parsed; with a single kept step (``log 1 = 0``), 1 if it parsed.
    """
    return temporal_entropy_and_confidence(step_answers, skip_ratio, weighting, alpha, equivalent)[1]


def answer_changes(step_answers: Sequence[Any], equivalent: Equivalence | None = None) -> int:
    """How often the parsed answer changes to a non-equivalent one; unparsable steps are skipped."""
    eq = equivalent or _equal
    changes, previous = 0, None
    for answer in as_trajectory(step_answers):
        if answer is None:
            continue
        if previous is not None and not (_same_object(answer, previous) or eq(answer, previous)):
            changes += 1
        previous = answer
    return changes


def _same_object(a: Any, b: Any) -> bool:
    """Cheap identity/equality check before a possibly expensive ``equivalent`` call."""
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):
        return False


def ever_correct(step_correct: Sequence[bool]) -> bool:
    """Correct at some step (the per-sample event behind EverPass@1|t)."""
    return any(bool(c) for c in as_trajectory(step_correct, "step_correct"))


def correct_then_wrong(step_correct: Sequence[bool]) -> bool:
    """Correct at some step but wrong at the final one: the answer was found, then overwritten."""
    flags = as_trajectory(step_correct, "step_correct")
    return any(bool(c) for c in flags) and not bool(flags[-1])


def ever_pass_at_1(step_correct: Sequence[Sequence[bool]]) -> float:
    """EverPass@1|t: the share of samples whose parsed answer is correct at some step."""
    batch = as_trajectory(step_correct, "the batch of step_correct")
    return sum(ever_correct(c) for c in batch) / len(batch)


def correct_then_wrong_rate(step_correct: Sequence[Sequence[bool]]) -> float:
    """The share of samples correct at some step and wrong at the end."""
    batch = as_trajectory(step_correct, "the batch of step_correct")
    return sum(correct_then_wrong(c) for c in batch) / len(batch)
