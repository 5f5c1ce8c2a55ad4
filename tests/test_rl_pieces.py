"""Pure RL pieces against hand-computed values: rewards, TCR, advantages, log-prob estimators, the loss."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dllm_lab.decoding import DecodeConfig, TrajectoryRecorder, decode
from dllm_lab.decoding.loop import prepare_prompts
from dllm_lab.rl import (
    BUILTIN_REWARDS,
    LOG_SCORE_EPS,
    REWARDS,
    RewardBatch,
    commit_steps,
    completion_mask,
    correctness_reward,
    full_mask_logps,
    get_reward,
    group_advantages,
    one_step_logps,
    policy_loss,
    register_reward,
    task_reward,
    tcr_reward,
    trajectory_logps,
    weighted_sum,
)
from dllm_lab.tasks import get_task
from dllm_lab.temporal import TemporalCallback, TemporalSettings

MASK, EOS = 4, 3  # stub vocabulary: 0, 1, 2 words, 3 EOS/pad, 4 mask


class StubLM(nn.Module):
    """``logits[b, i, v] = table[x_bi, v] + n_b * [v == 0]``, ``n_b`` the number of mask tokens in row b.

    With the zero table, a masked position scores ``log p(t) = n [t == 0] - log(e^n + 4)``: the value
    depends on how many positions the input masks, so wrong inputs give wrong log-probs. Records inputs.
    """

    mask_token_id = MASK
    eos_token_ids = (EOS,)

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(5, 5))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((input_ids.clone(), attention_mask.clone()))
        n = (input_ids == MASK).sum(1).float()  # (B,)
        bump = torch.zeros(5)
        bump[0] = 1.0
        return self.table[input_ids] + n[:, None, None] * bump


class Capture:
    """Delegates to a DiffusionLM, keeping the inputs of every ``logits`` call."""

    def __init__(self, lm) -> None:
        self.lm, self.calls = lm, []

    def __getattr__(self, name):
        return getattr(self.lm, name)

    def logits(self, input_ids, attention_mask=None):
        self.calls.append((input_ids.clone(), None if attention_mask is None else attention_mask.clone()))
        return self.lm.logits(input_ids, attention_mask)


def lp(n: int, t: int) -> float:
    """Hand formula of the stub at a masked position: ``n [t == 0] - log(e^n + 4)``."""
    return n * (t == 0) - math.log(math.exp(n) + 4)


# -- rewards -------------------------------------------------------------------------------------------------
CD = {"numbers": [16, 93, 100], "target": 23}


def _batch(task, texts, examples, temporal=None, rule="spherical"):
    correct = torch.tensor([task.is_correct(t, e) for t, e in zip(texts, examples, strict=True)], dtype=torch.float32)
    return RewardBatch(texts, examples, [task] * len(texts), correct, temporal, rule)


def test_task_and_correctness_rewards_countdown():
    task = get_task("countdown")
    texts = ["<answer>\\boxed{100-93+16}</answer>", "<answer>\\boxed{100-93-16}</answer>", "I do not know"]
    batch = _batch(task, texts, [CD] * 3)
    assert get_reward("task")(batch).tolist() == pytest.approx([1.0, 0.1, 0.0])  # no answer: the lowest reward
    assert get_reward("correct")(batch).tolist() == [1.0, 0.0, 0.0]
    assert task_reward(batch) == [1.0, 0.1, 0.0] and correctness_reward(batch).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="3 completions but 2 examples"):
        RewardBatch(texts, [CD] * 2, [task] * 3, torch.zeros(3))


def test_user_rewards_share_the_registry_with_the_built_ins():
    assert set(BUILTIN_REWARDS) <= set(REWARDS)

    @register_reward("test_length")
    def length(batch):
        return [len(c) for c in batch.completions]

    try:
        batch = _batch(get_task("countdown"), ["ab", "abcd"], [CD] * 2)
        assert get_reward("test_length")(batch).tolist() == [2.0, 4.0]
        register_reward("test_length", lambda b: [0.0])  # re-registering a user reward replaces it
        with pytest.raises(ValueError, match="returned 1 values for 2 completions"):
            get_reward("test_length")(batch)
    finally:
        REWARDS.pop("test_length")
    with pytest.raises(ValueError, match="built in"):
        register_reward("task", length)
    with pytest.raises(ValueError, match=r"unknown reward 'nope'.*register_reward"):
        get_reward("nope")


def _confidence(tse: float, h_max: float) -> float:
    return 1.0 if h_max == 0 else min(1.0, max(0.0, 1 - tse / h_max))


def test_tcr_rules_by_hand_correct_point():
    tse, y = 0.5, 1.0
    c = 1 - 0.5 / math.log(4)
    norm = math.sqrt(c**2 + (1 - c) ** 2)
    expected = {
        "tse": -0.5, "fixed": c, "brier": 1 - (c - 1) ** 2, "logarithmic": 1 + math.log(c),
        "spherical": 1 + c / norm, "proper_spherical": 1 + c / norm,
    }
    for rule, value in expected.items():
        assert tcr_reward(tse, c, y, rule) == pytest.approx(value, abs=1e-12), rule


def test_tcr_rules_by_hand_wrong_point():
    tse, y = 0.3, 0.0
    c = 1 - 0.3 / math.log(2)
    norm = math.sqrt(c**2 + (1 - c) ** 2)
    expected = {
        "tse": -0.3, "fixed": 0.0, "brier": -(c**2), "logarithmic": math.log(1 - c),
        "spherical": c / norm, "proper_spherical": (1 - c) / norm,
    }
    for rule, value in expected.items():
        assert tcr_reward(tse, c, y, rule) == pytest.approx(value, abs=1e-12), rule


def test_tcr_confidence_edges_and_tensors():
    assert tcr_reward(0.0, 1.0, 1.0, "spherical") == pytest.approx(2.0)
    assert tcr_reward(0.0, 1.0, 0.0, "proper_spherical") == pytest.approx(0.0)
    assert tcr_reward(0.0, 1.0, 1.0, "logarithmic") == pytest.approx(1 + math.log(1 - LOG_SCORE_EPS))
    assert tcr_reward(0.0, 1.0, 0.0, "logarithmic") == pytest.approx(math.log(LOG_SCORE_EPS))
    assert tcr_reward(2.0, 0.0, 0.0, "proper_spherical") == pytest.approx(1.0)  # c = 0, 1 - c = 1
    assert tcr_reward(2.0, 0.0, 1.0, "brier") == pytest.approx(0.0)  # 1 - (0 - 1)^2
    assert tcr_reward(0.0, 1.5, 1.0, "fixed") == pytest.approx(1.0)  # c is clipped to [0, 1]
    # tensors in -> tensor out, elementwise equal to the float path
    tse = torch.tensor([0.5, 0.3, 0.0])
    y = torch.tensor([True, False, True])
    c = torch.tensor([_confidence(0.5, math.log(4)), _confidence(0.3, math.log(2)), 1.0])
    for rule in ("fixed", "brier", "logarithmic", "spherical", "proper_spherical", "tse"):
        out = tcr_reward(tse, c, y, rule)
        assert isinstance(out, torch.Tensor) and out.shape == (3,) and out.dtype == torch.float32
        singles = [tcr_reward(float(t), float(cc), float(yy), rule) for t, cc, yy in zip(tse, c, y, strict=True)]
        assert out.tolist() == pytest.approx(singles, abs=1e-6), rule
    assert isinstance(tcr_reward(0.5, 0.5, 1.0, "fixed"), float)
    with pytest.raises(ValueError, match="proper_spherical"):
        tcr_reward(0.5, 0.5, 1.0, "sphere")


def test_tcr_reward_uses_the_callbacks_confidence_one_kept_step_nothing_parsed(tiny_lm):
    """Regression: with one kept step and no parsable answer, TSE = log 1 = 0 and the callback's confidence
    is 0. Recomputing c from TSE / log(kept) gave c = 1 and a spherical reward of 1.0 for a wrong answer."""
    task = get_task("countdown")
    sample = TemporalCallback(tiny_lm, task, settings=TemporalSettings()).summarise([None], CD)
    assert sample.tse == 0.0 and sample.confidence == 0.0 and sample.correct == [False]
    batch = _batch(task, ["no answer"], [CD], temporal=[sample], rule="spherical")
    assert get_reward("tcr")(batch).tolist() == [0.0]
    assert get_reward("tcr")(_batch(task, ["no answer"], [CD], [sample], "tse")).tolist() == [0.0]


def test_weighted_sum_and_its_errors():
    out = weighted_sum({"task": [1.0, 0.0], "tcr": torch.tensor([0.5, 2.0])}, {"task": 2.0, "tcr": 0.5})
    assert out.tolist() == pytest.approx([2.0 * 1.0 + 0.5 * 0.5, 2.0 * 0.0 + 0.5 * 2.0])
    with pytest.raises(ValueError, match=r"no weight for \['tcr'\]"):
        weighted_sum({"task": [1.0], "tcr": [0.0]}, {"task": 1.0})
    with pytest.raises(ValueError, match=r"weight without reward \['fmt'\]"):
        weighted_sum({"task": [1.0]}, {"task": 1.0, "fmt": 1.0})
    with pytest.raises(ValueError, match="differ in length"):
        weighted_sum({"task": [1.0, 0.0], "tcr": [0.0]}, {"task": 1.0, "tcr": 1.0})


# -- advantages ----------------------------------------------------------------------------------------------
R = [1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0]


def test_group_advantages_each_scale_by_hand():
    assert group_advantages(R, 4).tolist() == [0.5, -0.5, 0.5, -0.5, 0, 0, 0, 0]
    g = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # group 1: deviations +-0.5, sample std sqrt(4 * 0.25 / 3)
    assert group_advantages(R, 4, "group").tolist() == pytest.approx([g, -g, g, -g, 0, 0, 0, 0], abs=1e-6)
    # batch: mean 1.25, squared deviations 2*0.0625 + 2*1.5625 + 4*0.5625 = 5.5, sample var 5.5/7
    b = 0.5 / (math.sqrt(5.5 / 7) + 1e-4)
    assert group_advantages(torch.tensor(R), 4, "batch").tolist() == pytest.approx([b, -b, b, -b, 0, 0, 0, 0],
                                                                                   abs=1e-6)


def test_group_advantages_equal_groups_exactly_zero_and_errors():
    for scale in ("none", "group", "batch"):
        adv = group_advantages([0.1, 0.1, 0.1, 0.7, 0.7, 0.7], 3, scale)
        assert (adv == 0).all() and not adv.isnan().any(), scale
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(R[:7], 4)
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        group_advantages(R, 1)
    with pytest.raises(ValueError, match="unknown advantage scale"):
        group_advantages(R, 4, "std")


# -- log-prob estimators ---------------------------------------------------------------------------------------
PROMPT = torch.tensor([[EOS, 1, 2], [0, 1, 2]])  # row 0 left-padded
PROMPT_ATTN = torch.tensor([[0, 1, 1], [1, 1, 1]])
COMPLETION = torch.tensor([[1, 0, 3], [0, 2, 2]])


def test_completion_mask_up_to_first_eos():
    ids = torch.tensor([[1, 3, 2, 3], [3, 0, 0, 0], [1, 2, 0, 1]])
    assert completion_mask(ids, (3,)).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert completion_mask(ids, [3, 2]).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]


def test_one_step_and_full_mask_by_hand():
    lm = StubLM()
    # p_mask_prompt=1: every real prompt token masked (never the padding): n = 2 + 3 and 3 + 3
    logp = one_step_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION, seed=0, p_mask_prompt=1.0)
    expected = torch.tensor([[lp(5, 1), lp(5, 0), lp(5, 3)], [lp(6, 0), lp(6, 2), lp(6, 2)]])
    assert torch.allclose(logp, expected, atol=1e-5)
    ids, attn = lm.calls[-1]
    assert ids.tolist() == [[EOS, MASK, MASK, MASK, MASK, MASK], [MASK] * 6]
    assert attn.tolist() == [[0, 1, 1, 1, 1, 1], [1] * 6]
    # full mask: the prompt untouched, n = 3 in both rows
    logp = full_mask_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION)
    assert logp.dtype == torch.float32
    expected = torch.tensor([[lp(3, 1), lp(3, 0), lp(3, 3)], [lp(3, 0), lp(3, 2), lp(3, 2)]])
    assert torch.allclose(logp, expected, atol=1e-5)
    assert lm.calls[-1][0].tolist() == [[EOS, 1, 2, MASK, MASK, MASK], [0, 1, 2, MASK, MASK, MASK]]
    assert torch.equal(one_step_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION, seed=3, p_mask_prompt=0.0), logp)
    with pytest.raises(ValueError, match="p_mask_prompt"):
        one_step_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION, seed=0, p_mask_prompt=1.5)


@pytest.fixture
def tiny_prompts(tiny_lm):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (2, 24), generator=g)
    ids[ids == tiny_lm.mask_token_id] = 5
    ids[0, :4] = tiny_lm.pad_token_id
    attn = torch.ones_like(ids)
    attn[0, :4] = 0
    completion = torch.randint(5, 300, (2, 6), generator=g)
    completion[completion == tiny_lm.mask_token_id] = 5
    return ids, attn, completion


def test_one_step_seeded_mask_on_tiny_lm(tiny_lm, tiny_prompts):
    ids, attn, completion = tiny_prompts
    lm = Capture(tiny_lm)
    with torch.no_grad():
        a = one_step_logps(lm, ids, attn, completion, seed=11, p_mask_prompt=0.5)
        b = one_step_logps(lm, ids, attn, completion, seed=11, p_mask_prompt=0.5)
        c = one_step_logps(lm, ids, attn, completion, seed=12, p_mask_prompt=0.5)
        full = full_mask_logps(lm, ids, attn, completion)
    assert a.shape == (2, 6) and torch.isfinite(a).all() and (a <= 0).all()
    assert torch.equal(a, b) and torch.equal(lm.calls[0][0], lm.calls[1][0])
    assert not torch.equal(lm.calls[0][0], lm.calls[2][0]) and not torch.allclose(a, c)
    for inputs, _ in lm.calls[:3]:
        prompt = inputs[:, :24]
        masked = prompt == tiny_lm.mask_token_id
        assert not masked[0, :4].any()  # padding is never masked
        assert masked.any() and (prompt[~masked] == ids[~masked]).all()
        assert (inputs[:, 24:] == tiny_lm.mask_token_id).all()
    assert torch.equal(lm.calls[3][0][:, :24], ids)  # full mask: the prompt is never masked
    assert lm.calls[3][1].tolist() == torch.cat([attn, torch.ones(2, 6, dtype=attn.dtype)], 1).tolist()
    assert not torch.allclose(full, a)


def test_commit_steps():
    committed = torch.zeros(3, 2, 4, dtype=torch.bool)
    committed[0, 0, 2] = committed[1, 0, 0] = committed[1, 0, 1] = committed[2, 0, 3] = True
    committed[0, 1, 1] = committed[2, 1, 2] = committed[2, 1, 3] = True  # row 1, position 0: pre-filled
    assert commit_steps(committed).tolist() == [[1, 1, 0, 2], [-1, 0, 2, 2]]
    assert commit_steps(torch.zeros(0, 2, 3, dtype=torch.bool)).tolist() == [[-1] * 3] * 2


def test_trajectory_logps_by_hand():
    lm = StubLM()
    prompt, attn = torch.tensor([[EOS, 1], [0, 1]]), torch.tensor([[0, 1], [1, 1]])
    completion = torch.tensor([[2, 1, 0, 1], [0, 2, 1, 0]])
    step = torch.tensor([[1, 1, 0, 2], [-1, 0, 2, 2]])
    logp, mask = trajectory_logps(lm, prompt, attn, completion, step, num_steps=4)
    M = MASK
    # the canvas before each step: positions committed earlier (and the pre-filled -1) revealed
    assert [ids[:, 2:].tolist() for ids, _ in lm.calls] == [
        [[M, M, M, M], [0, M, M, M]],
        [[M, M, 0, M], [0, 2, M, M]],
        [[2, 1, 0, M], [0, 2, M, M]],
    ]  # step 3 commits nothing: no forward pass
    assert all(a.tolist() == [[0, 1, 1, 1, 1, 1], [1] * 6] for _, a in lm.calls)
    assert torch.equal(mask, step[None] == torch.arange(4)[:, None, None])
    expected = torch.zeros(4, 2, 4)
    expected[0, 0, 2], expected[0, 1, 1] = lp(4, 0), lp(3, 2)
    expected[1, 0, 0], expected[1, 0, 1] = lp(3, 2), lp(3, 1)
    expected[2, 0, 3], expected[2, 1, 2], expected[2, 1, 3] = lp(1, 1), lp(2, 1), lp(2, 0)
    assert torch.allclose(logp, expected, atol=1e-5)
    with pytest.raises(ValueError, match="num_steps=2"):
        trajectory_logps(lm, prompt, attn, completion, step, num_steps=2)


def test_trajectory_replays_the_decoder_inputs(tiny_lm):
    """With a recorded decode (a template with pre-filled tokens), step s sees exactly the decoder's canvas."""
    lm = Capture(tiny_lm)
    cfg = DecodeConfig(gen_length=24, block_length=24, steps=12, infill=True, infill_answer_length=4)
    prompt_ids, prompt_attn = prepare_prompts(tiny_lm, [[7, 8, 9, 10], [11, 12]])
    with torch.no_grad():
        out = decode(lm, prompt_ids, cfg, [TrajectoryRecorder()], attention_mask=prompt_attn)
        decoder_inputs = [ids for ids, _ in lm.calls]
        committed = out.extras["trajectory"]["committed"]
        step = commit_steps(committed)
        lm.calls.clear()
        logp, mask = trajectory_logps(lm, prompt_ids, prompt_attn, out.sequences, step, committed.shape[0])
    assert (step == -1).any() and (step >= 0).any()  # the template's pre-filled tokens are never committed
    assert len(lm.calls) == len(decoder_inputs) == committed.shape[0]
    for s, (ids, _) in enumerate(lm.calls):
        assert torch.equal(ids, decoder_inputs[s]), f"step {s}"
    assert torch.equal(mask, committed) and torch.isfinite(logp).all() and (logp[mask] < 0).all()


# -- loss ------------------------------------------------------------------------------------------------------
def loss_example():
    """3 samples x 3 tokens, old policy log-prob 0 so rho = exp(logp); sample 2 has an empty mask."""
    rho = torch.tensor([[1.2, 2.0, 1.0], [0.25, 1.0, 1.0], [1.0, 1.0, 1.0]])
    logp = rho.log()
    logp[0, 2] = float("-inf")  # unmasked garbage must not matter
    logp[2] = float("nan")
    d = torch.tensor([[0.0, math.log(2), 0.0], [-math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]])  # ref - logp
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    return logp, torch.zeros(3, 3), torch.nan_to_num(logp) + d, torch.tensor([1.0, -2.0, 5.0]), mask


def test_policy_loss_by_hand():
    logp, old, ref, adv, mask = loss_example()
    loss, stats = policy_loss(logp, old, ref, adv, mask, eps=0.5, beta=0.04)
    # sample 0, A = 1: rho 1.2 -> -1.2; rho 2.0 clipped to 1.5 -> -1.5
    # sample 1, A = -2: rho 0.25 clipped to 0.5 -> -min(-0.5, -1.0) = 1.0; rho 1 -> 2.0 twice
    policy = ((-1.2 - 1.5) / 2 + (1.0 + 2.0 + 2.0) / 3 + 0.0) / 3
    # k3 = e^d - d - 1: d = ln 2 -> 1 - ln 2; d = -ln 2 -> ln 2 - 0.5
    kl = ((0 + (1 - math.log(2))) / 2 + ((math.log(2) - 0.5) + 0 + 0) / 3 + 0.0) / 3
    assert loss.item() == pytest.approx(policy + 0.04 * kl, abs=1e-6)
    assert stats["kl"].item() == pytest.approx(kl, abs=1e-6)
    assert stats["policy"].item() == pytest.approx(policy, abs=1e-6)
    assert stats["clip_ratio"].item() == pytest.approx(2 / 5)  # (0, 1) and (1, 0) of 5 masked tokens
    # without the reference policy
    loss0, stats0 = policy_loss(logp, old, None, adv, mask, beta=0.0)
    assert loss0.item() == pytest.approx(policy, abs=1e-6) and stats0["kl"].item() == 0.0
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_loss(logp, old, None, adv, mask, beta=0.04)
    with pytest.raises(ValueError, match=r"advantages must be \(B,\)"):
        policy_loss(logp, old, ref, adv[:2], mask)


def test_policy_loss_step_reduction_by_hand():
    """(S, B, L): token mean per step, mean over the steps that score something, then over samples."""
    rho = torch.tensor([[[1.0, 1.2], [9.0, 9.0]], [[1.4, 9.0], [0.8, 9.0]]])  # (S=2, B=2, L=2); 9 = unmasked
    mask = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [1, 0]]], dtype=torch.bool)
    loss, _ = policy_loss(rho.log(), torch.zeros(2, 2, 2), None, torch.tensor([1.0, 1.0]), mask, beta=0.0)
    sample0 = (-(1.0 + 1.2) / 2 + -1.4) / 2
    sample1 = -0.8  # only step 1 scores a token of sample 1
    assert loss.item() == pytest.approx((sample0 + sample1) / 2, abs=1e-6)


def test_policy_loss_gradients_are_finite():
    logp, old, ref, adv, mask = loss_example()
    logp = logp.clone().requires_grad_(True)
    loss, _ = policy_loss(logp, old, ref, adv, mask)
    loss.backward()
    assert torch.isfinite(logp.grad).all()
    assert (logp.grad[~mask] == 0).all() and (logp.grad[0, 0] != 0) and (logp.grad[1, 1] != 0)
    assert logp.grad[0, 1] == pytest.approx(0.04 * (1 - 2) / 2 / 3, abs=1e-6)  # clipped: only the KL term moves it
    # end to end through the estimators of the stub: the model's parameters get finite, non-zero grads
    lm = StubLM()
    one = one_step_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION, seed=0)
    traj, tmask = trajectory_logps(lm, PROMPT, PROMPT_ATTN, COMPLETION, torch.tensor([[0, 1, 1], [1, 0, -1]]), 2)
    cmask = completion_mask(COMPLETION, (EOS,))
    loss = policy_loss(one, one.detach(), one.detach() - 0.1, torch.tensor([1.0, -1.0]), cmask)[0]
    loss = loss + policy_loss(traj, traj.detach(), None, torch.tensor([1.0, -1.0]), tmask, beta=0.0)[0]
    loss.backward()
    assert torch.isfinite(lm.table.grad).all() and lm.table.grad.abs().sum() > 0


# -- estimators and settings -------------------------------------------------------------------------------
def test_estimators_are_selected_by_name_and_new_ones_register_themselves():
    from dllm_lab.rl import ESTIMATORS, Estimator, FullMask, OneStep, Trajectory, get_estimator

    assert {"one_step": OneStep, "full_mask": FullMask, "trajectory": Trajectory}.items() <= ESTIMATORS.items()
    assert get_estimator("one_step", p_mask_prompt=0.3).p_mask_prompt == 0.3
    assert get_estimator("trajectory").needs_trajectory and OneStep.varies_per_iteration
    with pytest.raises(ValueError, match=r"unknown estimator 'two_step'"):
        get_estimator("two_step")

    class Zero(Estimator):
        name = "test_zero"

    try:
        assert ESTIMATORS["test_zero"] is Zero
        with pytest.raises(NotImplementedError):
            Zero().logps(None, None, 0)
    finally:
        ESTIMATORS.pop("test_zero")
    with pytest.raises(ValueError, match="recorded with its trajectory"):
        Trajectory().logps(None, SimpleNamespace(commit_step=None), 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"estimator": "two_step"}, r"algo\.estimator"), ({"rewards": {"speed": 1.0}}, r"unknown \['speed'\]"),
     ({"rewards": {}}, r"algo\.rewards"), ({"rewards": {"task": float("nan")}}, "finite"),
     ({"tcr_rule": "sphere"}, r"algo\.tcr_rule"), ({"num_generations": 1}, r"algo\.num_generations"),
     ({"num_iterations": 0}, r"algo\.num_iterations"), ({"temperature": 0.0}, r"algo\.temperature"),
     ({"eps": 0.0}, r"algo\.eps"), ({"beta": -1.0}, r"algo\.beta"), ({"p_mask_prompt": 2.0}, r"algo\.p_mask_prompt"),
     ({"advantage_scale": "rank"}, r"algo\.advantage_scale"), ({"max_grad_norm": 0.0}, r"algo\.max_grad_norm"),
     ({"sample_table_every": -1}, r"algo\.sample_table_every")],
)
def test_grpo_settings_name_the_override_to_fix(change, message):
    from dllm_lab.errors import ConfigError
    from dllm_lab.rl import GRPOSettings

    with pytest.raises(ConfigError, match=message):
        GRPOSettings(**change)


def test_a_tse_reward_needs_one_task_per_rollout(tiny_lm):
    from dllm_lab.errors import ConfigError
    from dllm_lab.models import left_pad
    from dllm_lab.rl import GRPOSettings, rollout

    tasks = {n: get_task(n, prompt_style="compact") for n in ("arith", "countdown")}
    examples = [tasks["arith"].synthetic(1)[0], tasks["countdown"].synthetic(1)[0]]
    ids, mask = left_pad([tiny_lm.encode_prompt(t.build_prompt(e)) for t, e in zip(tasks.values(), examples,
                                                                                    strict=True)], 0)
    batch = {"prompt_ids": ids, "attention_mask": mask, "examples": examples, "tasks": list(tasks)}
    with pytest.raises(ConfigError, match="one task per run"):
        rollout(tiny_lm, batch, DecodeConfig(gen_length=8, block_length=8, steps=8),
                GRPOSettings(rewards={"tcr": 2.0}, num_generations=2), tasks, seed=0)


# -- d1's format rewards -----------------------------------------------------------------------------------
D1_GOOD = "<reasoning>\n3 * 24 = 72\n</reasoning>\n<answer>\n72\n</answer>\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # d1's soft pattern has no DOTALL: a reasoning block on its own lines does not match it
        (D1_GOOD, {"d1_integer": 0.5, "d1_strict_format": 0.5, "d1_soft_format": 0.0, "d1_xml_count": 0.5}),
        # trailing text after </answer>: strict format lost, 0.001 per character off the XML count
        (D1_GOOD + "bye", {"d1_integer": 0.5, "d1_strict_format": 0.0, "d1_soft_format": 0.0,
                           "d1_xml_count": 0.5 - 0.003 - 0.003}),
        ("<reasoning>r</reasoning> <answer>7.5</answer>", {"d1_integer": 0.0, "d1_strict_format": 0.0,
                                                          "d1_soft_format": 0.5, "d1_xml_count": 0.0}),
        ("no tags at all 72", {"d1_integer": 0.0, "d1_strict_format": 0.0, "d1_soft_format": 0.0,
                               "d1_xml_count": 0.0}),
    ],
)
def test_d1_format_rewards_by_hand(text, expected):
    task = get_task("gsm8k")
    batch = _batch(task, [text], [{"question": "q", "answer": "72"}])
    for name, value in expected.items():
        assert get_reward(name)(batch).tolist() == pytest.approx([value]), name


def test_d1s_gsm8k_reward_sum_is_available_by_name():
    from dllm_lab.rl import D1_MATH_REWARDS, GRPOSettings

    settings = GRPOSettings(rewards=dict.fromkeys(D1_MATH_REWARDS, 1.0))
    task = get_task("gsm8k", prompt_style="d1")
    text = D1_GOOD.replace("72\n</answer>", "\\boxed{72}\n</answer>")
    batch = _batch(task, [text], [{"question": "q", "answer": "72"}])
    total = sum(float(r(batch)[0]) for r in settings.reward_functions().values())
    # correctness 2.0 + strict 0.5 + XML count 0.5; "\boxed{72}" is not all digits and the soft pattern
    # does not cross lines: no bonus for either
    assert total == pytest.approx(3.0)


def test_the_answer_likelihood_reward_scores_the_gold_answer_under_each_rollout(tiny_lm):
    from dllm_lab.decoding.infill import trace_answer_likelihood
    from dllm_lab.errors import ConfigError
    from dllm_lab.models import left_pad
    from dllm_lab.rl import GRPOSettings, rollout

    task = get_task("arith", prompt_style="compact")
    examples = task.synthetic(2, seed=5)
    ids, mask = left_pad([tiny_lm.encode_prompt(task.build_prompt(e)) for e in examples], tiny_lm.pad_token_id)
    batch = {"prompt_ids": ids, "attention_mask": mask, "examples": examples, "tasks": ["arith", "arith"]}
    infill = DecodeConfig(gen_length=32, block_length=32, steps=16, infill=True, infill_reasoning_length=12,
                          infill_answer_length=4, infill_delimiter="</reasoning>\n<answer>\n\\boxed{",
                          infill_closing="}")
    settings = GRPOSettings(rewards={"task": 1.0, "answer_likelihood": 0.5}, num_generations=2)
    ro = rollout(tiny_lm, batch, infill, settings, {"arith": task}, seed=3)
    gold = [task.gold_answer_text(e) for e in examples for _ in range(2)]
    expected = trace_answer_likelihood(tiny_lm, infill.replace(temperature=settings.temperature, seed=3),
                                       ro.completion, ro.prompt_ids, ro.attention_mask, gold)
    torch.testing.assert_close(ro.rewards["answer_likelihood"], expected)
    assert (ro.rewards["answer_likelihood"] < 0).all()
    torch.testing.assert_close(ro.total, ro.rewards["task"] + 0.5 * ro.rewards["answer_likelihood"])
    with pytest.raises(ConfigError, match="infilling decoder"):
        rollout(tiny_lm, batch, DecodeConfig(gen_length=16, block_length=8, steps=8), settings, {"arith": task}, 3)
