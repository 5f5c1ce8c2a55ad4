"""Temporal signals of diffusion decoding in one place (Time Is a Feature, Wang et al. 2025, arXiv 2508.09138).

- ``signals``: the pure functions (TCV, TSE, confidence, EverPass, correct-then-wrong, answer changes);
- ``settings``: :class:`TemporalSettings`, every parameter of them, validated once;
- ``callback``: :class:`TemporalCallback`, which records per-step answers during :func:`~dllm_lab.decoding.decode`
  and computes each sample's votes, TSE and confidence once (evaluation and the TCR reward both use them);
- ``metrics``: sum-reduced torchmetrics wrapping the signals;
- ``records`` / ``plots``: per-sample parquet records, their read-back from MLflow, and the PNG plots.

>>> temporal_vote([None, 7, 5, 5], weighting="exp", alpha=5.0)
5
>>> out = decode(lm, prompts, config, [TemporalCallback(lm, task, examples)])
>>> out.extras["temporal"][0].votes["exp"], out.extras["temporal"][0].tse
"""

from dllm_lab.temporal.callback import TemporalCallback, TemporalSample, parse_trajectories
from dllm_lab.temporal.metrics import (
    AnswerChanges,
    CorrectThenWrong,
    EverPass,
    TemporalSemanticEntropy,
    TemporalVoteAccuracy,
    temporal_metric_collection,
)
from dllm_lab.temporal.records import (
    STUDY_EXPERIMENT,
    TEMPORAL_TAG,
    TemporalRun,
    latest_temporal_run,
    load_temporal_run,
    read_records,
    results_from_metrics,
    temporal_records,
    write_records,
)
from dllm_lab.temporal.settings import TemporalSettings
from dllm_lab.temporal.signals import (
    TSE_ALPHA,
    TSE_SKIP_RATIO,
    VOTE_ALPHA,
    WEIGHTINGS,
    Equivalence,
    answer_changes,
    as_trajectory,
    check_trajectories,
    cluster_answers,
    correct_then_wrong,
    correct_then_wrong_rate,
    ever_correct,
    ever_pass_at_1,
    first_kept_step,
    step_weights,
    temporal_confidence,
    temporal_entropy_and_confidence,
    temporal_semantic_entropy,
    temporal_vote,
    temporal_vote_index,
)

__all__ = [
    "STUDY_EXPERIMENT", "TEMPORAL_TAG", "TSE_ALPHA", "TSE_SKIP_RATIO", "VOTE_ALPHA", "WEIGHTINGS", "AnswerChanges",
    "CorrectThenWrong", "Equivalence", "EverPass", "TemporalCallback", "TemporalRun", "TemporalSample",
    "TemporalSemanticEntropy", "TemporalSettings", "TemporalVoteAccuracy", "answer_changes", "as_trajectory",
    "check_trajectories", "cluster_answers", "correct_then_wrong", "correct_then_wrong_rate", "ever_correct",
    "ever_pass_at_1", "first_kept_step", "latest_temporal_run", "load_temporal_run", "parse_trajectories",
    "read_records", "results_from_metrics", "step_weights", "temporal_confidence", "temporal_entropy_and_confidence",
    "temporal_metric_collection", "temporal_records", "temporal_semantic_entropy", "temporal_vote",
    "temporal_vote_index", "write_records",
]
