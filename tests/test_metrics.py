"""Temporal signals (Time Is a Feature, arXiv 2508.09138): TCV, TSE, EverPass, metrics, callback, DDP."""

from __future__ import annotations

import json
import math
import os
import random
import socket
import warnings
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dllm_lab.decoding import DecodeCallback, DecodeConfig, DecodeState, decode
from dllm_lab.tasks import get_task
from dllm_lab.temporal import (
    AnswerChanges,
    CorrectThenWrong,
    EverPass,
    TemporalCallback,
    TemporalSemanticEntropy,
    TemporalVoteAccuracy,
    answer_changes,
    cluster_answers,
    correct_then_wrong,
    correct_then_wrong_rate,
    ever_correct,
    ever_pass_at_1,
    first_kept_step,
    step_weights,
    temporal_confidence,
    temporal_metric_collection,
    temporal_semantic_entropy,
    temporal_vote,
    temporal_vote_index,
)

LN = math.log


def close(a: float, b: float) -> bool:
    """Numeric equivalence with tolerance, as a task's ``is_equivalent`` would be."""
    return abs(a - b) < 0.01


# -- weights and votes --------------------------------------------------------------------------------
def test_step_weights_follow_the_paper():
    assert step_weights(4, "fixed") == [1.0] * 4
    assert step_weights(4, "linear") == pytest.approx([0.25, 0.5, 0.75, 1.0])  # (s+1)/S
    assert step_weights(4, "exp", alpha=5.0) == pytest.approx([math.exp(5 * s / 4) for s in range(4)])


# S = 5, answers [2, 2, 2, 3, 3]
#   fixed:          2 -> 1+1+1 = 3                      3 -> 1+1 = 2                        => 2
#   linear (s+1)/5: 2 -> (1+2+3)/5 = 1.2                3 -> (4+5)/5 = 1.8                  => 3
#   exp alpha=5:    2 -> e^0+e^1+e^2 = 11.107           3 -> e^3+e^4 = 74.684               => 3
#   exp alpha=0.5:  2 -> e^0+e^.1+e^.2 = 3.3266         3 -> e^.3+e^.4 = 2.8417             => 2
TRAJ = [2, 2, 2, 3, 3]


@pytest.mark.parametrize(
    ("weighting", "alpha", "expected"),
    [("fixed", 5.0, 2), ("linear", 5.0, 3), ("exp", 5.0, 3), ("exp", 0.5, 2)],
)
def test_vote_hand_computed(weighting, alpha, expected):
    assert temporal_vote(TRAJ, weighting=weighting, alpha=alpha) == expected
    # the index of the vote is the winning cluster's latest step: 2 for answer 2, 4 for answer 3
    assert temporal_vote_index(TRAJ, weighting=weighting, alpha=alpha) == {2: 2, 3: 4}[expected]


def test_ties_go_to_the_answer_seen_latest():
    assert temporal_vote([1, 2], "fixed") == 2  # 1 vs 1
    assert temporal_vote([2, 1, 1, 2], "fixed") == 2  # 2 vs 2; 2 last seen at step 3
    assert temporal_vote([1, 2, 2, 1, None], "fixed") == 1  # 2 vs 2; 1 last seen at step 3
    # linear, S=4: a -> .25+1 = 1.25, b -> .5+.75 = 1.25 (equal only up to float rounding)
    assert temporal_vote(["a", "b", "b", "a"], "linear") == "a"
    assert temporal_vote(["b", "a", "a", "b"], "linear") == "b"


def test_unparsable_steps_cast_no_vote():
    # only step 1 parsed: 5 wins, even though the later (heavier) steps are None
    assert temporal_vote([None, 5, None, None], "exp") == 5
    assert temporal_vote_index([None, 5, None, None], "exp") == 1
    # fixed: 7 has 1 vote, 4 has 2; the Nones in between change nothing
    assert temporal_vote([4, None, 4, None, 7], "fixed") == 4


def test_all_none_trajectory_gives_no_vote_max_tse_zero_confidence():
    answers = [None] * 8
    for weighting in ("fixed", "linear", "exp"):
        assert temporal_vote(answers, weighting) is None
        assert temporal_vote_index(answers, weighting) is None
    assert temporal_semantic_entropy(answers) == pytest.approx(LN(4))  # 4 kept steps (s >= 0.5*8)
    assert temporal_semantic_entropy(answers, base=2) == pytest.approx(2.0)
    assert temporal_confidence(answers) == 0.0


def test_custom_equivalence_clusters_answers():
    answers = [1.0, 1.001, 2.0]
    assert cluster_answers(answers, close) == [0, 0, 1]
    # one cluster of mass 2 vs 1: the cluster's latest member is returned
    assert temporal_vote(answers, "fixed", equivalent=close) == 1.001
    # exact equality: three clusters of mass 1, a tie -> the latest answer
    assert temporal_vote(answers, "fixed") == 2.0
    assert temporal_semantic_entropy([1.0, 1.001], skip_ratio=0.0, equivalent=close) == 0.0
    assert temporal_semantic_entropy([1.0, 1.001], skip_ratio=0.0, weighting="fixed") == pytest.approx(LN(2))


# -- temporal semantic entropy ------------------------------------------------------------------------
def test_tse_fixed_and_linear_with_skip():
    answers = [1, 2, 3, 1, 1, 2]  # S = 6, skip 0.5 keeps s = 3, 4, 5 -> [1, 1, 2]
    # fixed: p = (2/3, 1/3); TSE = -(2/3 ln 2/3 + 1/3 ln 1/3) = 0.636514; c = 1 - 0.636514 / ln 3 = 0.420620
    assert temporal_semantic_entropy(answers, weighting="fixed") == pytest.approx(0.6365141683)
    assert temporal_confidence(answers, weighting="fixed") == pytest.approx(0.4206198357)
    # linear keeps the global index: f = 4/6, 5/6, 6/6 -> p = (9/6, 6/6) / (15/6) = (0.6, 0.4)
    # TSE = -(0.6 ln 0.6 + 0.4 ln 0.4) = 0.673012
    assert temporal_semantic_entropy(answers, weighting="linear") == pytest.approx(0.6730116670)
    # no skip, fixed: p = (3/6, 2/6, 1/6); TSE = 1.011404
    assert temporal_semantic_entropy(answers, skip_ratio=0.0, weighting="fixed") == pytest.approx(1.0114042647)


def test_tse_exp_default_alpha():
    # S = 6, alpha = 12.8, kept s = 3, 4, 5 with f = e^(12.8 s / 6) = 601.845, 5081.355, 42901.697
    # answers [3, 1, 1, 2, 2, 1]: cluster 2 -> 601.845 + 5081.355 = 5683.201, cluster 1 -> 42901.697
    # p = (0.116975, 0.883025); TSE = 0.360854 nats; c = 1 - 0.360854 / ln 3 = 0.671537
    answers = [3, 1, 1, 2, 2, 1]
    assert temporal_semantic_entropy(answers) == pytest.approx(0.3608535004)
    assert temporal_confidence(answers) == pytest.approx(0.6715369889)
    # no skip, S = 4, [1, 1, 2, 2]: f = 1, e^3.2, e^6.4, e^9.6 = 1, 24.5325, 601.845, 14764.78
    # p1 = 25.5325 / 15392.16 = 0.0016588; TSE = 0.0122765
    assert temporal_semantic_entropy([1, 1, 2, 2], skip_ratio=0.0) == pytest.approx(0.0122765053)


def test_tse_bits_vs_nats():
    kw = {"skip_ratio": 0.0, "weighting": "fixed"}  # [1, 1, 2, 2]: p = (1/2, 1/2), ln 2 nats = 1 bit
    assert temporal_semantic_entropy([1, 1, 2, 2], **kw) == pytest.approx(LN(2))
    assert temporal_semantic_entropy([1, 1, 2, 2], base=2, **kw) == pytest.approx(1.0)
    assert temporal_confidence([1, 1, 2, 2], **kw) == pytest.approx(0.5)  # 1 - ln2/ln4, base-independent


def test_skip_ratio_edges():
    # 0.1 * 30 is 3.0000000000000004 in floats; step 3 must still be kept
    answers = [None] * 3 + ["x"] + ["y"] * 26  # kept 27 steps: p = (1/27, 26/27), TSE = 0.158411
    assert temporal_semantic_entropy(answers, skip_ratio=0.1, weighting="fixed") == pytest.approx(0.1584105701)
    # skip_ratio = 1 keeps only the final step; it always counts
    assert temporal_semantic_entropy([1, 2, 3], skip_ratio=1.0) == 0.0
    assert temporal_confidence([1, 2, 3], skip_ratio=1.0) == 1.0
    assert temporal_confidence([1, 2, None], skip_ratio=1.0) == 0.0
    # one step: log(1) = 0, no 0/0
    assert temporal_semantic_entropy([5]) == 0.0 and temporal_confidence([5]) == 1.0
    assert temporal_semantic_entropy([None]) == 0.0 and temporal_confidence([None]) == 0.0
    # unparsable kept steps are left out of the masses
    assert temporal_semantic_entropy([None, None, 1, None]) == 0.0
    assert temporal_confidence([None, None, 1, None]) == 1.0


def test_tse_skip_floors_like_the_released_code():
    """Time Is a Feature's code keeps ``answers[int(T * ratio):]``: with an odd number of steps 0.5 drops 3 of 7."""
    answers = [1, 2, 2, 1, 1, 1, 2]  # floor keeps s = 3..6 -> [1, 1, 1, 2]; a ceiling would keep [1, 1, 2]
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert temporal_semantic_entropy(answers, skip_ratio=0.5, weighting="fixed") == pytest.approx(expected)
    assert first_kept_step(7, 0.5) == 3 and first_kept_step(6, 0.5) == 3 and first_kept_step(1, 0.5) == 0
    for steps in range(1, 40):
        for ratio in (0.0, 0.1, 0.25, 0.29, 0.3, 0.5, 0.7, 0.9, 1.0):
            released = len(range(steps)[int(steps * ratio):])  # what the released code keeps
            assert steps - first_kept_step(steps, ratio) == max(released, 1), (steps, ratio)


# -- per-sample events --------------------------------------------------------------------------------
def test_answer_changes_skip_unparsable_steps():
    assert answer_changes([1, 1, 2, None, 2, 1]) == 2  # 1->2, (2, None, 2) no change, 2->1
    assert answer_changes([None, None]) == 0
    assert answer_changes([1.0, 1.001, 1.002]) == 2
    assert answer_changes([1.0, 1.001, 1.002], equivalent=close) == 0


def test_everpass_and_correct_then_wrong():
    batch = [[False, True, False], [False, False, True], [False, False, False], [True, True, True]]
    assert [ever_correct(c) for c in batch] == [True, True, False, True]
    assert [correct_then_wrong(c) for c in batch] == [True, False, False, False]
    assert ever_pass_at_1(batch) == 0.75
    assert correct_then_wrong_rate(batch) == 0.25


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda: temporal_vote([]), lambda: temporal_vote_index([]), lambda: temporal_semantic_entropy([]),
        lambda: temporal_confidence([]), lambda: answer_changes([]), lambda: ever_correct([]),
        lambda: correct_then_wrong([]), lambda: ever_pass_at_1([]), lambda: ever_pass_at_1([[]]),
        lambda: EverPass().update([[]], [[]]),
    ],
)
def test_empty_trajectory_raises(call):
    with pytest.raises(ValueError, match="empty trajectory"):
        call()


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="mismatched lengths: sample 1 has 3 step answers but 2"):
        EverPass().update([[1, 2], [1, 2, 3]], [[True, False], [True, False]])
    with pytest.raises(ValueError, match="mismatched lengths: 2 samples of step_answers but 1"):
        TemporalVoteAccuracy().update([[1], [2]], [[True]])
    with pytest.raises(ValueError, match="mismatched lengths"):
        temporal_metric_collection().update([[1, 2]], [[True]])


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="weighting='cubic'"):
        temporal_vote([1], weighting="cubic")
    with pytest.raises(ValueError, match="alpha=-1"):
        temporal_vote([1], alpha=-1.0)
    with pytest.raises(ValueError, match="skip_ratio=1.5"):
        temporal_semantic_entropy([1], skip_ratio=1.5)
    with pytest.raises(ValueError, match="base=1"):
        temporal_semantic_entropy([1], base=1)
    with pytest.raises(TypeError, match="wrap a single answer"):
        temporal_vote("42")


def _random_batch(seed: int, n: int) -> tuple[list[list], list[list[bool]]]:
    rng = random.Random(seed)
    answers = [[rng.choice([None, 1, 2, 3, 2.001]) for _ in range(rng.randint(1, 9))] for _ in range(n)]
    correct = [[a is not None and close(a, 2) for a in traj] for traj in answers]
    return answers, correct


def test_no_nan_anywhere():
    answers, correct = _random_batch(0, 200)
    answers += [[None], [None] * 7, [1], [1e300, -1e300]]
    correct += [[False], [False] * 7, [True], [False, False]]
    for traj in answers:
        for w in ("fixed", "linear", "exp"):
            for alpha in (0.0, 5.0, 12.8, 1e4):  # a huge alpha must not overflow
                temporal_vote(traj, w, alpha)
                for skip in (0.0, 0.5, 1.0):
                    assert math.isfinite(temporal_semantic_entropy(traj, skip, w, alpha))
                    assert 0.0 <= temporal_confidence(traj, skip, w, alpha) <= 1.0
    metrics = temporal_metric_collection(equivalent=close)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compute() before update() warns
        empty = metrics.compute()
    assert all(torch.isfinite(v) for v in empty.values()) and "tse_correct_mean" not in empty
    metrics.update(answers, correct)
    values = metrics.compute()
    assert all(torch.isfinite(v) for v in values.values())


# -- metric classes -----------------------------------------------------------------------------------
def test_metric_classes_match_pure_functions():
    answers, correct = _random_batch(1, 40)
    metrics = temporal_metric_collection(equivalent=close)
    for i in range(0, 40, 7):  # uneven batches
        metrics.update(answers[i : i + 7], correct[i : i + 7])
    got = {k: v.item() for k, v in metrics.compute().items()}
    for w in ("fixed", "linear", "exp"):
        idx = [temporal_vote_index(a, w, 5.0, close) for a in answers]
        expected = sum(i is not None and c[i] for i, c in zip(idx, correct, strict=True)) / 40
        assert got[f"tcv_{w}_accuracy"] == pytest.approx(expected)
    assert got["everpass"] == pytest.approx(ever_pass_at_1(correct))
    assert got["correct_then_wrong"] == pytest.approx(correct_then_wrong_rate(correct))
    assert got["answer_changes"] == pytest.approx(sum(answer_changes(a, close) for a in answers) / 40)
    tse = [temporal_semantic_entropy(a, equivalent=close) for a in answers]
    assert got["tse_mean"] == pytest.approx(sum(tse) / 40)
    confidence = [temporal_confidence(a, equivalent=close) for a in answers]
    assert got["tse_confidence_mean"] == pytest.approx(sum(confidence) / 40)
    right = [t for t, c in zip(tse, correct, strict=True) if c[-1]]
    wrong = [t for t, c in zip(tse, correct, strict=True) if not c[-1]]
    assert got["tse_correct_mean"] == pytest.approx(sum(right) / len(right))
    assert got["tse_wrong_mean"] == pytest.approx(sum(wrong) / len(wrong))


def test_individual_metrics_and_reset():
    answers, correct = [[2, 3, 3], [None, 2, 2]], [[True, False, False], [False, True, True]]
    vote = TemporalVoteAccuracy("fixed")
    vote.update(answers, correct)
    assert vote.metric_name == "tcv_fixed_accuracy" and vote.compute().item() == 0.5  # votes 3 (wrong), 2 (right)
    ever, ctw, changes = EverPass(), CorrectThenWrong(), AnswerChanges()
    for m in (ever, ctw, changes):
        m.update(answers, correct)
    assert (ever.compute().item(), ctw.compute().item(), changes.compute().item()) == (1.0, 0.5, 0.5)
    tse = TemporalSemanticEntropy(skip_ratio=0.0, weighting="fixed", base=2)
    tse.update(answers, correct)
    # sample 0: p = (1/3, 2/3) -> 0.918296 bits (final wrong); sample 1: one cluster -> 0 (final right)
    out = {k: v.item() for k, v in tse.compute().items()}
    assert out["tse_wrong_mean"] == pytest.approx(0.9182958341) and out["tse_correct_mean"] == 0.0
    state = vote.vote_total
    vote.reset()  # re-creates states: needed in on_*_epoch_start under ddp_spawn
    assert vote.vote_total.item() == 0 and vote.vote_total is not state


# -- DDP: two real CPU processes ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, answers: list, correct: list, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    try:
        metrics = temporal_metric_collection(equivalent=close)
        metrics.reset()  # as a LightningModule would in on_test_epoch_start
        mine_a, mine_c = answers[rank::2], correct[rank::2]
        for i in range(0, len(mine_a), 3):
            metrics.update(mine_a[i : i + 3], mine_c[i : i + 3])
        result = {k: v.item() for k, v in metrics.compute().items()}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_metrics_under_ddp_equal_single_process(tmp_path):
    import torch.multiprocessing as mp

    answers, correct = _random_batch(2, 13)  # odd: the ranks get 7 and 6 samples
    correct[1::2] = [[False] * len(c) for c in correct[1::2]]  # rank 1 alone has no correct final answer
    single = temporal_metric_collection(equivalent=close)
    single.update(answers, correct)
    expected = {k: v.item() for k, v in single.compute().items()}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_ddp_worker, args=(_free_port(), answers, correct, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key


# -- the decoding callback ----------------------------------------------------------------------------
CFG = DecodeConfig(gen_length=16, block_length=8, steps=8)


def _batch(n: int = 3):
    task = get_task("arith", prompt_style="compact")
    examples = task.synthetic(n, seed=0)
    return task, examples, [task.build_prompt(ex) for ex in examples]


def _counting(fn):
    def wrapper(text):
        wrapper.calls += 1
        return fn(text)

    wrapper.calls = 0  # parser calls, to check the cache
    return wrapper


def test_callback_one_answer_per_step_final_equals_parse_of_text(tiny_lm):
    task, examples, prompts = _batch()
    cb = TemporalCallback(tiny_lm, task, examples)
    out = decode(tiny_lm, prompts, CFG, [cb])
    plain = decode(tiny_lm, prompts, CFG)
    assert out.nfe == plain.nfe == CFG.steps and torch.equal(out.sequences, plain.sequences)  # no extra passes
    samples = out.extras["temporal"]
    assert len(samples) == len(prompts)
    for sample, text, example in zip(samples, out.texts, examples, strict=True):
        assert len(sample.answers) == len(sample.correct) == CFG.steps
        assert sample.final_answer == task.parse_answer(text)
        assert sample.correct[-1] == task.is_correct(text, example)
        assert set(sample.votes) == {"fixed", "linear", "exp"} and set(sample.vote_correct) == set(sample.votes)
        assert math.isfinite(sample.tse) and 0.0 <= sample.confidence <= 1.0
        json.dumps(sample.as_dict())


class _Predictions(DecodeCallback):
    """Keeps each step's full prediction (B, L), independently of the callback under test."""

    def on_decode_start(self, state: DecodeState) -> None:
        self.steps: list[torch.Tensor] = []

    def on_step(self, state: DecodeState) -> None:
        self.steps.append(state.prediction.cpu().clone())


def test_callback_parses_each_distinct_answer_region_once(tiny_lm):
    task, _, prompts = _batch()
    task.parse_answer = _counting(lambda text: text)  # identity parser: the answer is the text itself
    task.is_equivalent = lambda a, b: a == b
    cb, rec = TemporalCallback(tiny_lm, task), _Predictions()
    # sampling, so that the random model's rows differ between steps and samples
    out = decode(tiny_lm, prompts, DecodeConfig(gen_length=16, block_length=8, steps=8, temperature=1.0, seed=0),
                 [rec, cb])
    samples = out.extras["temporal"]
    assert [s.final_answer for s in samples] == out.texts
    # independent count: distinct generation rows cut at the first end token
    stop = set(tiny_lm.eos_token_ids + tiny_lm.eot_token_ids)
    regions = set()
    for step in rec.steps:
        for row in step.tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            regions.add(tuple(row[:cut]))
    assert task.parse_answer.calls == cb.parse_calls == len(regions) > 1
    assert cb.rows == (CFG.steps + 1) * len(prompts)  # every step plus the output, which is not re-parsed
    for b, sample in enumerate(samples):  # each step's answer is the text of that step's prediction
        assert sample.steps == list(range(CFG.steps))
        assert sample.answers == [tiny_lm.decode_completion(step[b]) for step in rec.steps]


def _drive(cb: TemporalCallback, predictions: list[torch.Tensor], active: list[torch.Tensor] | None = None):
    """Run ``cb`` by hand over (B, L) predictions; the output is the last prediction."""
    B, L = predictions[0].shape
    state = DecodeState(canvas=torch.zeros(B, 3 + L, dtype=torch.long), prompt_length=3)
    cb.on_decode_start(state)
    for step, pred in enumerate(predictions):
        state.step, state.prediction = step, pred
        state.active = None if active is None else active[step]
        cb.on_step(state)
    out = SimpleNamespace(sequences=predictions[-1].clone(), extras={})
    cb.on_decode_end(state, out)
    return out.extras["temporal"]


def test_callback_cache_skips_unchanged_rows_and_tokens_after_eos(tiny_lm):
    task = get_task("arith")
    task.parse_answer = _counting(task.parse_answer)
    eos = tiny_lm.eos_token_ids[0]
    ids = tiny_lm.tokenizer("<answer>\\boxed{12}</answer>", add_special_tokens=False)["input_ids"]
    row = torch.tensor([*ids, eos, 5, 6, 7])
    predictions = []
    for step in range(6):
        pred = torch.stack([row, row])  # both samples hold the same answer region
        pred[:, -3:] = torch.randint(10, 50, (2, 3))  # noise after EOS never reaches the text
        if step >= 4:
            pred[1, 0] = eos  # sample 1 changes at step 4 (empty text) and stays
        predictions.append(pred)
    cb = TemporalCallback(tiny_lm, task, examples=[{"question": "", "answer": "12"}] * 2)
    first, second = _drive(cb, predictions)
    assert task.parse_answer.calls == cb.parse_calls == 2 and cb.rows == 2 * 7  # 6 steps + the output
    assert first.answers == [12.0] * 6 and first.correct == [True] * 6 and first.votes["exp"] == 12.0
    assert second.answers == [12.0] * 4 + [None] * 2 and second.ever_correct and second.votes["exp"] == 12.0
    assert second.vote_correct == {"fixed": True, "linear": True, "exp": True}
    # kept steps 3..5: only step 3 parsed; unparsable steps are left out of TSE and skipped by changes
    assert second.answer_changes == 0 and second.tse == 0.0 and second.confidence == 1.0
    assert first.tse == 0.0 and first.confidence == 1.0


def test_callback_trajectory_keeps_active_steps_and_ends_with_the_output(tiny_lm):
    task = get_task("arith")
    eos = tiny_lm.eos_token_ids[0]
    text = lambda s: tiny_lm.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    a, b = text("<answer>\\boxed{3}</answer>"), text("<answer>\\boxed{4}</answer>")
    L = max(len(a), len(b)) + 1
    pad = lambda ids: torch.tensor(ids + [eos] * (L - len(ids)))  # noqa: E731
    predictions = [torch.stack([pad(a), pad(a)]), torch.stack([pad(b), pad(a)]), torch.stack([pad(b), pad(b)])]
    active = [torch.tensor([True, True]), torch.tensor([True, False]), torch.tensor([True, False])]
    first, second = _drive(TemporalCallback(tiny_lm, task), predictions, active)
    assert first.steps == [0, 1, 2] and first.answers == [3.0, 4.0, 4.0] and first.answer_changes == 1
    # sample 1 stopped after step 0; its one entry is the output's answer (4), not the stale step-0 one
    assert second.steps == [0] and second.answers == [4.0] and second.correct is None


@pytest.mark.parametrize("extra", [{}, {"early_exit": True, "early_exit_threshold": 100.0}], ids=["infill", "exit"])
def test_callback_follows_templated_and_early_exit_decodes(tiny_lm, extra):
    task, _, prompts = _batch()
    task.parse_answer = lambda text: text
    task.is_equivalent = lambda a, b: a == b
    cfg = DecodeConfig(gen_length=32, block_length=None, steps=8, temperature=1.0, seed=0, infill=True, **extra)
    cb = TemporalCallback(tiny_lm, task)
    out = decode(tiny_lm, prompts, cfg, [cb])
    samples = out.extras["temporal"]
    assert [s.final_answer for s in samples] == out.texts  # template texts drop end tokens, not cut at them
    if extra:  # every row exits after its first step, masks left: its one entry is the output's answer
        assert all(s.steps == [0] and len(s.answers) == 1 for s in samples)
    else:
        assert all(s.steps == list(range(8)) for s in samples)
