"""The full decoding engine: schedules x rules x blocks x modifiers, EOSER, infilling, early exit, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from dllm_lab.decoding import (
    DecodeCallback,
    DecodeConfig,
    TrajectoryRecorder,
    apply_eoser,
    ar_med_select,
    ascending_counts,
    ascending_schedule,
    block_plan,
    decode,
    eoser_gamma,
    factor_select,
    med_select,
    origin_counts,
    select_topk,
    threshold_select,
)
from dllm_lab.decoding import loop as loop_module
from dllm_lab.errors import ConfigError
from dllm_lab.factory import load_decoder_preset
from dllm_lab.models.adapter import DiffusionLM

PROMPTS = ["Tom has 3 apples. He buys 4 more.", "Solve 1+2.", "Using the numbers 1, 2, 3, make 6."]
PRESETS = sorted((Path(__file__).parents[1] / "configs" / "decoder").glob("*.yaml"))
RANDOM_PRESETS = {"random", "origin", "posterior"}  # random positions or sampled tokens: batch != alone by design
T, F = True, False


class ScriptedLM(DiffusionLM):
    """Deterministic logits with varied confidence, for the adaptive rules and early exit.

    Position ``i`` of a row of length ``N`` (distance ``d = N - 1 - i`` from the end, so left padding does
    not matter) predicts token ``10 + d % 50`` with a peak height depending on ``d`` and on the row's
    decoded tokens: confidences and entropies vary across positions, steps and rows.
    ``answer_peak``: positions with ``d`` in that range become certain once ``answer_after`` masks are gone.
    """

    def __init__(self, base: DiffusionLM, answer_peak: range | None = None, answer_after: int = 0) -> None:
        super().__init__(base.model, base.tokenizer, "masked_lm", base.mask_token_id, base.eos_token_ids)
        self.answer_peak, self.answer_after, self.calls = answer_peak, answer_after, 0
        self.vocab = len(base.tokenizer)
        self.start_masks: torch.Tensor | None = None

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        B, N = input_ids.shape
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        masks = ((input_ids == self.mask_token_id) & real).sum(1, keepdim=True)  # (B, 1)
        content = torch.where(real & (input_ids != self.mask_token_id), input_ids, 0).sum(1, keepdim=True)
        d = torch.arange(N - 1, -1, -1)[None, :].expand(B, N)  # distance from the end
        height = 12.0 * ((d * 5 + content) % 7) / 6  # (B, N) in [0, 12]
        out = torch.zeros(B, N, self.vocab)
        out.scatter_(2, (10 + d % 50)[..., None], height[..., None])
        if self.answer_peak is not None:
            if self.start_masks is None:
                self.start_masks = masks
            ready = masks <= self.start_masks - self.answer_after  # (B, 1)
            in_answer = (d >= self.answer_peak.start) & (d < self.answer_peak.stop)
            out[..., :] -= 30.0 * (in_answer & ready)[..., None]
            out.scatter_add_(2, torch.full((B, N, 1), 26), (60.0 * (in_answer & ready))[..., None])
        return out


class Probe(DecodeCallback):
    """Keeps float32 confidence, committed, active and eligibility of every step."""

    name = "probe"

    def __init__(self, needs: frozenset[str] = frozenset()) -> None:
        self.needs = needs
        self.steps: list[dict[str, torch.Tensor | None]] = []

    def on_step(self, state):
        self.steps.append({"conf": state.confidence.clone(), "committed": state.committed.clone(),
                           "active": state.active.clone(), "entropy": state.entropy, "block": state.block_range})


def run(lm, prompts=PROMPTS, callbacks=(), **kw):
    cfg = DecodeConfig(**{"gen_length": 16, "block_length": 8, "steps": 8, **kw})
    rec = TrajectoryRecorder()
    return decode(lm, prompts, cfg, [rec, *callbacks]), rec, cfg


def check_invariants(out, cfg, lm, expected_counts=None):
    """Committed tokens never change, each position committed once, only inside its block, no mask left."""
    traj = out.extras["trajectory"]
    committed, prediction = traj["committed"], traj["prediction"]  # (S, B, L)
    assert (committed.sum(0) == 1).all() and not (out.sequences == lm.mask_token_id).any()
    first = committed.float().argmax(0)
    for s in range(committed.shape[0]):
        done = first <= s
        assert torch.equal(prediction[s][done], out.sequences.to(torch.int32)[done])
    if expected_counts is not None:
        assert committed.sum(-1).tolist() == [[c] * len(out.texts) for c in expected_counts]
    plan = block_plan(cfg)
    block_of = torch.bucketize(torch.arange(cfg.gen_length), torch.tensor([b.hi for b in plan]), right=True)  # (L,)
    # with a fixed schedule (nothing pre-filled), step s belongs to the block whose steps contain it
    scheduled = [i for i, b in enumerate(plan) for _ in range(b.steps or 0)]
    previous = 0
    for s in range(committed.shape[0]):  # each step commits inside one block, blocks in order
        blocks = block_of[committed[s].any(0)].unique()
        assert len(blocks) == 1 and blocks.item() >= previous
        if expected_counts is not None:
            assert blocks.item() == scheduled[s]
        previous = blocks.item()


# -- schedules (pure) ---------------------------------------------------------------------------------------
def test_ascending_schedule_l256_one_and_four_blocks():
    assert ascending_schedule(256) == [[1, 2, 4, 8, 16, 32, 64, 129]]
    four = ascending_schedule(256, 4)
    assert four == [[1, 2, 4, 8, 16], [32], [64], [129]]
    assert [sum(b) for b in four] == [31, 32, 64, 129]
    assert [sum(b) for b in ascending_schedule(256, 8)] == [1, 2, 4, 8, 16, 32, 64, 129]
    with pytest.raises(ValueError):
        ascending_schedule(96)
    with pytest.raises(ValueError):
        ascending_schedule(256, 9)


def test_ascending_counts_clip_for_prefilled_rows_and_block_plan():
    counts = ascending_counts(torch.tensor([31, 10, 0]), [1, 2, 4, 8, 16])
    assert counts.tolist() == [[1, 2, 4, 8, 16], [1, 2, 4, 3, 0], [0, 0, 0, 0, 0]]
    plan = block_plan(DecodeConfig(gen_length=64, block_length=16, steps=None, schedule="ascending"))
    assert [(b.lo, b.hi, b.steps, b.first_step) for b in plan] == [(0, 7, 3, 0), (7, 15, 1, 3), (15, 31, 1, 4),
                                                                     (31, 64, 1, 5)]


def test_origin_counts_probability_and_last_step():
    n = torch.full((20000,), 10)
    gen = torch.Generator().manual_seed(0)
    p0 = (1 - 1e-3) / 4  # 1 - t_1/t_0 on linspace(1, eps, 5)
    assert abs(origin_counts(n, 0, 4, 1e-3, gen).float().mean().item() - 10 * p0) < 0.05
    p2 = 1 - (1 - 3 * (1 - 1e-3) / 4) / (1 - 2 * (1 - 1e-3) / 4)
    assert abs(origin_counts(n, 2, 4, 1e-3, gen).float().mean().item() - 10 * p2) < 0.05
    assert origin_counts(torch.tensor([7, 0]), 3, 4).tolist() == [7, 0]
    a = origin_counts(n[:50], 0, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, origin_counts(n[:50], 0, 4, generator=torch.Generator().manual_seed(1)))


# -- EOSER (pure + global step) ---------------------------------------------------------------------------------
def test_eoser_gamma_both_formulas():
    assert eoser_gamma(0, 5, 0.4, 1.0) == pytest.approx(0.4)
    assert eoser_gamma(2, 5, 0.4, 1.0) == pytest.approx(0.7)
    assert eoser_gamma(4, 5, 0.4, 1.0) == pytest.approx(1.0)
    assert eoser_gamma(0, 1, 0.4, 1.0) == pytest.approx(1.0)
    assert eoser_gamma(0, 6, 0.01, 1.0, ascending=True) == pytest.approx(0.01 + 0.99 * 1 / 64)
    assert eoser_gamma(2, 6, 0.01, 1.0, ascending=True) == pytest.approx(0.01 + 0.99 * 7 / 64)
    assert eoser_gamma(5, 6, 0.01, 1.0, ascending=True) == pytest.approx(0.01 + 0.99 * 63 / 64)
    scaled = apply_eoser(torch.tensor([0.8, 0.8, -2.0, -2.0]), torch.tensor([T, F, T, F]), 0.5)
    torch.testing.assert_close(scaled, torch.tensor([0.4, 0.8, -4.0, -2.0]))


@pytest.mark.parametrize(("schedule", "total"), [("linear", 8), ("ascending", 4)])
def test_eoser_uses_the_global_step(tiny_lm, monkeypatch, schedule, total):
    seen = []
    real = loop_module.eoser_gamma

    def spy(step, total_steps, g_min, g_max, ascending=False):
        seen.append((step, total_steps, ascending, g_min))
        return real(step, total_steps, g_min, g_max, ascending)

    monkeypatch.setattr(loop_module, "eoser_gamma", spy)
    steps = None if schedule == "ascending" else 8
    run(tiny_lm, block_length=4 if schedule == "ascending" else 8, steps=steps, schedule=schedule, eoser=True)
    asc = schedule == "ascending"
    assert seen == [(s, total, asc, 0.01 if asc else 0.4) for s in range(total)]


def test_eoser_delays_confident_eos(tiny_lm):
    eos = tiny_lm.eos_token_ids[0]

    class EosLM(ScriptedLM):  # the last 8 positions: EOS, more confident than anything else
        def logits(self, input_ids, attention_mask=None):
            out = super().logits(input_ids, attention_mask)
            out[:, -8:, eos] = 40.0
            return out

    lm = EosLM(tiny_lm)
    kw = {"block_length": None, "steps": 16}
    plain, _, _ = run(lm, **kw)
    rejected, _, _ = run(lm, eoser=True, eoser_gamma_min=0.01, **kw)
    first_plain = plain.extras["trajectory"]["committed"][0]  # (B, L)
    first_rej = rejected.extras["trajectory"]["committed"][0]
    assert (plain.sequences[first_plain] == eos).all()
    assert not (rejected.sequences[first_rej] == eos).any()
    assert (rejected.sequences[:, -8:] == eos).all()  # EOS still wins by the end


# -- adaptive rules (pure, hand-made) -------------------------------------------------------------------------
def test_threshold_and_factor_select():
    scores = torch.tensor([[0.95, 0.5, 0.92, 0.99], [0.1, 0.3, 0.2, 0.05], [0.9, 0.9, 0.9, 0.9]])
    eligible = torch.tensor([[T, T, T, F], [T, T, T, T], [F, F, F, F]])
    assert threshold_select(scores, eligible, 0.9).tolist() == [[T, F, T, F], [F, T, F, F], [F, F, F, F]]
    # factor=1: rank n needs c >= 1 - 1/(n+1): 0.5, 0.667, 0.75, 0.8
    scores = torch.tensor([[0.9, 0.7, 0.8, 0.6], [0.3, 0.2, 0.25, 0.1], [0.99, 0.6, 0.99, 0.99]])
    eligible = torch.ones(3, 4, dtype=torch.bool)
    assert factor_select(scores, eligible, 1.0).tolist() == [[T, F, T, F], [T, F, F, F], [T, F, T, T]]
    # suppressed / NaN scores never pass but keep the row from stalling
    stuck = torch.tensor([[float("nan"), float("-inf")]])
    assert threshold_select(stuck, torch.tensor([[T, T]]), 0.9).sum() == 1
    assert select_topk(stuck, torch.tensor([[T, F]]), torch.tensor([2])).tolist() == [[T, F]]


def test_med_and_ar_med_select():
    H = torch.tensor([[0.1, 0.5, 0.15, 0.05], [1.0, 0.9, 2.0, 3.0]])
    eligible = torch.tensor([[T, T, T, F], [T, T, T, T]])
    assert med_select(H, eligible, 0.2).tolist() == [[T, F, T, F], [F, T, F, F]]
    H = torch.tensor([[0.0, 0.5, 0.1, 0.1, 0.9, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [0.1] * 6])
    eligible = torch.tensor([[F, T, T, T, T, T], [T, F, T, T, T, T], [F] * 6])
    assert ar_med_select(H, eligible, 0.2).tolist() == [
        [F, T, T, T, F, F],  # leftmost always, then right while H < lambda
        [T, F, F, F, F, F],  # a committed position breaks the run
        [F] * 6,
    ]


@pytest.mark.parametrize(
    ("rule", "scorer", "recompute"),
    [
        ("threshold", "low_confidence", lambda c, e: threshold_select(c, e, 0.9)),
        ("factor", "low_confidence", lambda c, e: factor_select(c, e, 1.0)),
        ("med", "entropy", lambda c, e: med_select(-c, e, 0.2)),
        ("ar_med", "entropy", lambda c, e: ar_med_select(-c, e, 0.2)),
    ],
)
def test_adaptive_rules_in_the_loop(tiny_lm, rule, scorer, recompute):
    lm = ScriptedLM(tiny_lm)
    probe = Probe()
    out, _, cfg = run(lm, callbacks=[probe], gen_length=32, steps=None, adaptive=rule, scorer=scorer)
    check_invariants(out, cfg, lm)
    committed = torch.stack([s["committed"] for s in probe.steps])
    active = torch.stack([s["active"] for s in probe.steps])
    per_step = committed.sum(-1)
    assert (per_step[active] >= 1).all() and (per_step[~active] == 0).all()
    assert per_step.max() > 1  # the rule really commits several tokens at once here
    for s in probe.steps:  # the loop commits exactly what the pure rule selects, inside the current block
        eligible = s["conf"] > float("-inf")
        assert torch.equal(s["committed"], recompute(s["conf"], eligible))
        lo, hi = s["block"]
        assert not s["committed"][:, :lo].any() and not s["committed"][:, hi:].any()
    assert out.nfe == lm.calls == len(probe.steps) < cfg.gen_length
    assert torch.equal(out.nfe_per_sample, active.sum(0))
    assert len(set(out.nfe_per_sample.tolist())) > 1  # rows finish at different times
    for i, prompt in enumerate(PROMPTS):  # per-sample NFE is what the row costs alone
        alone, _, _ = run(lm, prompts=[prompt], gen_length=32, steps=None, adaptive=rule, scorer=scorer)
        assert torch.equal(alone.sequences[0], out.sequences[i])
        assert alone.nfe == out.nfe_per_sample[i]


# -- fixed schedules in the loop ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "counts"),
    [
        ({"block_length": 8, "steps": 8}, [2] * 8),
        ({"block_length": None, "steps": 5}, [4, 3, 3, 3, 3]),
        ({"schedule": "ascending", "steps": None, "block_length": None}, [1, 2, 4, 9]),
        ({"schedule": "ascending", "steps": None, "block_length": 4}, [1, 2, 4, 9]),  # blocks [1, 2, 4, 9]
        ({"schedule": "ascending", "steps": 4, "block_length": 8}, [1, 2, 4, 9]),  # blocks [7, 9]
    ],
)
def test_fixed_schedules_commit_their_counts(tiny_lm, kw, counts):
    out, _, cfg = run(tiny_lm, **kw)
    check_invariants(out, cfg, tiny_lm, counts)
    assert out.nfe == cfg.total_steps == len(counts)
    assert out.nfe_per_sample.tolist() == [len(counts)] * len(PROMPTS)


def test_origin_reveals_everything_by_the_last_step(tiny_lm):
    out, rec, cfg = run(tiny_lm, schedule="origin", scorer="random", block_length=None, steps=8, seed=3)
    check_invariants(out, cfg, tiny_lm)
    committed = out.extras["trajectory"]["committed"]
    assert out.nfe == committed.shape[0] <= 8
    again, _, _ = run(tiny_lm, schedule="origin", scorer="random", block_length=None, steps=8, seed=3)
    assert torch.equal(again.sequences, out.sequences)
    assert torch.equal(again.extras["trajectory"]["committed"], committed)


@pytest.mark.parametrize(
    "rule",
    [{"schedule": "linear"}, {"schedule": "ascending", "steps": None}, {"schedule": "origin", "seed": 1},
     {"adaptive": "threshold", "steps": None}, {"adaptive": "factor", "steps": None},
     {"adaptive": "med", "steps": None, "scorer": "entropy"},
     {"adaptive": "ar_med", "steps": None, "scorer": "entropy"}],
    ids=["linear", "ascending", "origin", "threshold", "factor", "med", "ar_med"],
)
@pytest.mark.parametrize(
    "modifier",
    [{"temperature": 1.0, "seed": 5, "top_k": 20}, {"top_p": 0.9}, {"cfg_scale": 1.0}, {"logits_eos_inf": True},
     {"confidence_eos_eot_inf": True, "temperature": 0.5, "seed": 2}],
    ids=["gumbel_topk", "top_p", "cfg", "eos_inf", "conf_eos_inf"],
)
def test_modifiers_work_with_every_schedule_and_rule(tiny_lm, rule, modifier):
    lm = ScriptedLM(tiny_lm)
    out, _, cfg = run(lm, prompts=PROMPTS[:2], **{**rule, **modifier})
    check_invariants(out, cfg, lm)
    traj = out.extras["trajectory"]
    assert out.nfe == lm.calls * (2 if cfg.cfg_scale else 1) == traj["committed"].shape[0] * (2 if cfg.cfg_scale else 1)
    if cfg.logits_eos_inf:
        assert not (out.sequences == lm.eos_token_ids[0]).any()


# -- callbacks: what is computed, and stopping ---------------------------------------------------------------
def test_entropy_only_when_asked_and_stop_protocol(tiny_lm):
    lazy, asks = Probe(), Probe(needs=frozenset({"entropy"}))
    run(tiny_lm, callbacks=[lazy])
    assert all(s["entropy"] is None for s in lazy.steps)
    out, _, _ = run(tiny_lm, callbacks=[asks])
    assert all(s["entropy"].shape == (3, 16) and (s["entropy"] > 0).all() for s in asks.steps)

    class StopRow0(DecodeCallback):
        def on_step(self, state):
            if state.step == 2:
                state.request_stop(torch.tensor([True, False, False]))

    out, _, _ = run(tiny_lm, callbacks=[StopRow0()])
    assert out.nfe_per_sample.tolist() == [3, 8, 8] and out.nfe == 8
    assert (out.sequences[0] == tiny_lm.mask_token_id).sum() == 16 - 6

    class BadFill(DecodeCallback):
        def on_step(self, state):
            state.request_stop(torch.ones(3, dtype=torch.bool), fill=torch.ones(3, 16, dtype=torch.bool))

    with pytest.raises(RuntimeError, match="on_forward"):
        run(tiny_lm, callbacks=[BadFill()])


# -- presets ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_batch_equals_alone(tiny_lm, path):
    values = load_decoder_preset(path.stem)
    assert path.read_text().startswith("# ") and set(values) == {f.name for f in dataclasses.fields(DecodeConfig)}
    if path.stem != "base":  # presets list only what they change on top of base.yaml
        assert yaml.safe_load(path.read_text())["defaults"] == ["base", "_self_"]
    cfg = DecodeConfig.from_dict(values)
    prompts = PROMPTS[:2]
    batched = decode(tiny_lm, prompts, cfg)
    assert batched.sequences.shape == (2, cfg.gen_length) and batched.nfe > 0
    if not cfg.early_exit:
        assert not (batched.sequences == tiny_lm.mask_token_id).any()
    if path.stem in RANDOM_PRESETS:
        assert torch.equal(decode(tiny_lm, prompts, cfg).sequences, batched.sequences)  # seeded
        return
    for i, prompt in enumerate(prompts):
        alone = decode(tiny_lm, [prompt], cfg)
        assert torch.equal(alone.sequences[0], batched.sequences[i]) and alone.texts[0] == batched.texts[i]
        assert alone.nfe == batched.nfe_per_sample[i]


# -- bad settings fail before any forward pass ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"schedule": "ascending", "steps": None, "gen_length": 48}, "gen_length"),
        ({"schedule": "ascending", "steps": None, "gen_length": 64, "block_length": 8}, "block_length"),
        ({"schedule": "ascending", "gen_length": 64, "steps": 64}, "steps"),
        ({"adaptive": "threshold", "steps": None, "threshold": -0.1}, "threshold"),
        ({"adaptive": "threshold"}, "steps"),
        ({"adaptive": "fast", "steps": None}, "adaptive"),
        ({"adaptive": "med", "steps": None}, "scorer"),
        ({"adaptive": "threshold", "steps": None, "scorer": "entropy"}, "scorer"),
        ({"adaptive": "threshold", "steps": None, "schedule": "origin"}, "schedule"),
        ({"adaptive": "factor", "steps": None, "factor": 0.0}, "factor"),
        ({"med_lambda": -1.0}, "med_lambda"),
        ({"adaptive": "threshold", "steps": None, "eoser": True}, "eoser"),
        ({"eoser": True, "eoser_gamma_min": 0.0}, "eoser_gamma_min"),
        ({"schedule": "origin", "origin_eps": 0.0}, "origin_eps"),
        ({"steps": None}, "steps"),
        ({"early_exit": True}, "early_exit"),
        ({"infill": True, "early_exit": True, "early_exit_reduction": "median"}, "early_exit_reduction"),
        ({"infill": True, "infill_reasoning_length": 60}, "infill_reasoning_length"),
        ({"infill_answer_length": 0}, "infill_answer_length"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, name):
    with pytest.raises(ConfigError, match=rf"decoder\.{name}\b"):
        DecodeConfig(**kwargs)
