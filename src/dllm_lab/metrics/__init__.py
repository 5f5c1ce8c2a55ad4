"""Temporal signals of diffusion decoding: pure functions, torchmetrics and a decoding callback.

From "Time Is a Feature" (Wang et al. 2025, arXiv 2508.09138), ALGORITHMS.md section 6.

>>> temporal_vote([None, 7, 5, 5], weighting="exp", alpha=5.0)
5
>>> cb = TemporalCallback(lm, task, examples)
>>> out = decode(lm, prompts, config, [cb])
>>> out.extras["temporal"][0].votes["exp"], out.extras["temporal"][0].tse
"""

from dllm_lab.metrics.temporal import (
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
    step_weights,
    temporal_confidence,
    temporal_entropy_and_confidence,
    temporal_semantic_entropy,
    temporal_vote,
    temporal_vote_index,
)
from dllm_lab.metrics.temporal_callback import TemporalCallback, TemporalSample, parse_trajectories
from dllm_lab.metrics.temporal_metrics import (
    AnswerChanges,
    CorrectThenWrong,
    EverPass,
    TemporalSemanticEntropy,
    TemporalVoteAccuracy,
    temporal_metric_collection,
)

__all__ = [
    "TSE_ALPHA", "TSE_SKIP_RATIO", "VOTE_ALPHA", "WEIGHTINGS", "AnswerChanges", "CorrectThenWrong",
    "Equivalence", "EverPass", "TemporalCallback", "TemporalSample", "TemporalSemanticEntropy",
    "TemporalVoteAccuracy", "answer_changes", "as_trajectory", "check_trajectories", "cluster_answers",
    "correct_then_wrong", "correct_then_wrong_rate", "ever_correct", "ever_pass_at_1", "parse_trajectories",
    "step_weights", "temporal_confidence", "temporal_entropy_and_confidence", "temporal_metric_collection",
    "temporal_semantic_entropy", "temporal_vote", "temporal_vote_index",
]
