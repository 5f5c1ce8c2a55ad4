"""The denoising loop: schedule counts, block discipline, NFE, batching, suppression, bad settings."""

from __future__ import annotations

import pytest
import torch

from dllm_lab.decoding import DecodeConfig, SpeedMeter, TrajectoryRecorder, decode, linear_counts
from dllm_lab.decoding.scorers import filter_logits, position_scores, sample_tokens
from dllm_lab.errors import ConfigError

PROMPTS = ["Tom has 3 apples. He buys 4 more.", "Solve 1+2.", "Using the numbers 1, 2, 3, make 6."]


def run(lm, prompts=PROMPTS, **kw):
    rec = TrajectoryRecorder(keep_confidence=True)
    cfg = DecodeConfig(**{"gen_length": 16, "block_length": 8, "steps": 8, **kw})
    return decode(lm, prompts, cfg, [rec, SpeedMeter()]), rec, cfg


# -- schedule -----------------------------------------------------------------------------------------
def test_linear_counts_split_evenly_remainder_first():
    counts = linear_counts(torch.tensor([10, 8, 3]), 4)
    assert counts.tolist() == [[3, 3, 2, 2], [2, 2, 2, 2], [1, 1, 1, 0]]
    assert counts.sum(1).tolist() == [10, 8, 3]


# -- loop invariants ----------------------------------------------------------------------------------
def test_each_step_commits_its_count_inside_its_block_and_never_changes_committed(tiny_lm):
    out, _, cfg = run(tiny_lm)
    traj = out.extras["trajectory"]
    committed, prediction = traj["committed"], traj["prediction"]  # (S, B, L)
    assert committed.shape == (cfg.steps, len(PROMPTS), cfg.gen_length)
    per_block = cfg.steps_per_block
    expected = linear_counts(torch.tensor([cfg.block]), per_block)[0]
    for s in range(cfg.steps):
        block = s // per_block
        lo, hi = block * cfg.block, (block + 1) * cfg.block
        assert (committed[s].sum(1) == expected[s % per_block]).all()
        assert not committed[s][:, :lo].any() and not committed[s][:, hi:].any()
    # every position committed exactly once
    assert (committed.sum(0) == 1).all()
    # a committed token keeps its value in every later prediction and in the output
    first = committed.float().argmax(0)  # (B, L) step at which each position was committed
    for s in range(cfg.steps):
        done = first <= s
        assert torch.equal(prediction[s][done], out.sequences.to(torch.int32)[done])
    assert not (out.sequences == tiny_lm.mask_token_id).any()


def test_nfe_equals_steps_and_doubles_with_guidance(tiny_lm):
    out, _, cfg = run(tiny_lm)
    assert out.nfe == cfg.steps
    assert out.extras["speed"]["nfe"] == cfg.steps
    out_cfg, _, _ = run(tiny_lm, cfg_scale=1.0)
    assert out_cfg.nfe == 2 * cfg.steps


def test_full_diffusion_is_one_block(tiny_lm):
    out, _, cfg = run(tiny_lm, block_length=None, steps=4)
    assert cfg.num_blocks == 1 and out.nfe == 4
    assert out.extras["trajectory"]["committed"].sum(-1).tolist() == [[4] * 3] * 4


def test_batch_equals_each_prompt_alone_greedy(tiny_lm):
    batched, _, _ = run(tiny_lm)
    for i, prompt in enumerate(PROMPTS):
        alone, _, _ = run(tiny_lm, prompts=[prompt])
        assert torch.equal(alone.sequences[0], batched.sequences[i])
        assert alone.texts[0] == batched.texts[i]


def test_sampling_is_seeded_and_differs_from_greedy(tiny_lm):
    a, _, _ = run(tiny_lm, temperature=1.0, seed=7)
    b, _, _ = run(tiny_lm, temperature=1.0, seed=7)
    c, _, _ = run(tiny_lm, temperature=1.0, seed=8)
    assert torch.equal(a.sequences, b.sequences)
    assert not torch.equal(a.sequences, c.sequences)


def test_eos_suppression(tiny_lm):
    eos = tiny_lm.eos_token_ids[0]
    out, _, _ = run(tiny_lm, logits_eos_inf=True)
    assert not (out.sequences == eos).any()
    # confidence suppression only delays EOS: positions still get committed, count is unchanged
    out2, rec, cfg = run(tiny_lm, confidence_eos_eot_inf=True)
    assert (out2.extras["trajectory"]["committed"].sum(0) == 1).all()


def test_token_ids_and_padded_tensor_inputs_match_text(tiny_lm):
    ids = [tiny_lm.encode_prompt(p) for p in PROMPTS]
    from_text, _, _ = run(tiny_lm)
    from_ids = decode(tiny_lm, ids, DecodeConfig(gen_length=16, block_length=8, steps=8))
    assert torch.equal(from_text.sequences, from_ids.sequences)


def test_empty_prompt_list_returns_empty_output(tiny_lm):
    out = decode(tiny_lm, [], DecodeConfig(gen_length=16, block_length=8, steps=8))
    assert out.sequences.shape == (0, 16) and out.texts == [] and out.nfe == 0


# -- bad settings fail before any forward pass ----------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"gen_length": 30, "block_length": 8}, "decoder.block_length"),
        ({"gen_length": 32, "block_length": 8, "steps": 6}, "decoder.steps"),
        ({"gen_length": 16, "block_length": 8, "steps": 32}, "decoder.steps"),
        ({"temperature": -1.0}, "decoder.temperature"),
        ({"scorer": "confidence"}, "decoder.scorer"),
        ({"schedule": "cosine"}, "decoder.schedule"),
        ({"top_p": 1.5}, "decoder.top_p"),
        ({"gen_length": 0}, "decoder.gen_length"),
    ],
)
def test_impossible_settings_name_the_setting(kwargs, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        DecodeConfig(**kwargs)


def test_unknown_key_and_too_long_prompt(tiny_lm):
    with pytest.raises(ConfigError, match="unknown setting"):
        DecodeConfig.from_dict({"gen_len": 16})
    with pytest.raises(ConfigError, match="gen_length"):
        decode(tiny_lm, ["x " * 300], DecodeConfig(gen_length=256, block_length=32, steps=256))


# -- pure pieces --------------------------------------------------------------------------------------
def test_scorers_on_hand_made_distribution():
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]]])
    logits = probs.log()
    x0 = logits.argmax(-1)
    conf = position_scores(logits, x0, "low_confidence")
    torch.testing.assert_close(conf, torch.tensor([[0.7, 0.4]]))
    torch.testing.assert_close(position_scores(logits, x0, "margin"), torch.tensor([[0.5, 0.0]]))
    ent = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(position_scores(logits, x0, "entropy"), -ent)


def test_filtering_and_gumbel_sampling():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    # probabilities 0.644, 0.237, 0.087, 0.032: the nucleus keeps tokens until the mass crosses top_p
    assert (~torch.isinf(filter_logits(logits, top_p=0.6))).tolist() == [[True, False, False, False]]
    assert (~torch.isinf(filter_logits(logits, top_p=0.7))).tolist() == [[True, True, False, False]]
    assert sample_tokens(logits, 0.0).item() == 0
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(logits, 1.0, gen) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.03, rtol=0)


def test_sampling_only_the_masked_positions_keeps_the_draws_and_the_generator_state():
    logits = torch.randn(3, 7, 11, generator=torch.Generator().manual_seed(1))
    where = torch.rand(3, 7, generator=torch.Generator().manual_seed(2)) < 0.5
    full_gen, some_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    full, some = sample_tokens(logits, 0.7, full_gen), sample_tokens(logits, 0.7, some_gen, where)
    assert torch.equal(some[where], full[where]) and (some[~where] == 0).all()
    assert torch.equal(full_gen.get_state(), some_gen.get_state())
