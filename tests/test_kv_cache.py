"""KV caching in the decoding engine (decoder.cache=prefix|dual; docs/methods.md "KV cache") on a tiny random
bidirectional Llama built in code: exactness where the cache is exact, batch invariance, callbacks unchanged,
refusal where a model cannot cache."""

from __future__ import annotations

import pytest
import torch

from dllm_lab.decoding import DecodeConfig, TrajectoryRecorder, decode
from dllm_lab.errors import ConfigError
from dllm_lab.models import DiffusionLM, build_tiny_model, load_model

PROMPTS = ["12+35=", "Add 3 and 4, then multiply by 100.", "7*8"]  # three lengths: left padding in a batch


@pytest.fixture(scope="module")
def llama_lm(tiny_lm):
    model = build_tiny_model(tiny_lm.tokenizer, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                             seed=1, arch="llama").eval()
    tok = tiny_lm.tokenizer
    return DiffusionLM(model, tok, "bidirectional", tok.mask_token_id, (tok.eos_token_id,))


def _decode(lm, cache: str, prompts=PROMPTS, **changes):
    cfg = DecodeConfig(gen_length=24, block_length=8, steps=24, cache=cache).replace(**changes)
    return decode(lm, list(prompts), cfg)


def _decode_counting_inputs(lm, cache: str, **changes):
    """The decode, and the number of tokens each forward pass ran on."""
    seen = []
    hook = lm.model.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["input_ids"].shape[1]),
                                              with_kwargs=True)
    try:
        return _decode(lm, cache, **changes), seen
    finally:
        hook.remove()


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_one_step_per_block_is_exactly_the_uncached_decode(llama_lm, cache):
    # every pass is a block's refresh (a full forward), so nothing cached is ever stale
    plain, cached = _decode(llama_lm, "none", steps=3), _decode(llama_lm, cache, steps=3)
    assert torch.equal(cached.sequences, plain.sequences)
    assert cached.nfe == plain.nfe == 3


def test_a_single_block_prefix_cache_caches_the_prompt_only(llama_lm):
    # full diffusion: the prefix is the prompt; a dual cache has no suffix, so it is the prefix cache
    prefix = _decode(llama_lm, "prefix", block_length=24)
    dual = _decode(llama_lm, "dual", block_length=24)
    assert torch.equal(prefix.sequences, dual.sequences)
    assert (prefix.sequences != llama_lm.mask_token_id).all()


def test_the_refresh_pass_gives_the_uncached_logits(llama_lm):
    from dllm_lab.decoding.cache import BlockKVCache
    from dllm_lab.decoding.loop import prepare_prompts
    from dllm_lab.decoding.schedules import Block

    ids, mask = prepare_prompts(llama_lm, PROMPTS)
    canvas = torch.cat([ids, torch.full((3, 16), llama_lm.mask_token_id)], 1)
    attn = torch.cat([mask, torch.ones(3, 16, dtype=torch.long)], 1)
    with torch.no_grad():
        expected = llama_lm.logits(canvas, attn)[:, ids.shape[1]:]
        got = BlockKVCache(llama_lm, "dual", attn, ids.shape[1]).logits(canvas, Block(0, 8, 8, 0), refresh=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_cached_step_on_an_unchanged_canvas_gives_the_uncached_logits(llama_lm, cache):
    # nothing committed since the refresh: every cached key is exact, so only the positions, the mask and the
    # order of keys in the cache could make the step differ
    from dllm_lab.decoding.cache import BlockKVCache
    from dllm_lab.decoding.loop import prepare_prompts
    from dllm_lab.decoding.schedules import Block

    ids, mask = prepare_prompts(llama_lm, PROMPTS)
    P = ids.shape[1]
    canvas = torch.cat([ids, torch.full((3, 24), llama_lm.mask_token_id)], 1)
    canvas[:, P : P + 5] = ids[:, -5:]  # a finished stretch before the block
    attn = torch.cat([mask, torch.ones(3, 24, dtype=torch.long)], 1)
    kv = BlockKVCache(llama_lm, cache, attn, P)
    block = Block(8, 16, 8, 0)
    with torch.no_grad():
        refreshed = kv.logits(canvas, block, refresh=True)
        cached = kv.logits(canvas, block, refresh=False)
        again = kv.logits(canvas, block, refresh=False)  # the step's keys were cropped off: same cache again
    torch.testing.assert_close(cached, refreshed, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, cached, rtol=0, atol=0)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_refreshing_at_every_pass_is_exactly_the_uncached_decode(llama_lm, cache):
    # 8 steps per block: without decoder.cache_refresh only the first is a full pass; with 1, all of them are
    plain, cached = _decode(llama_lm, "none"), _decode(llama_lm, cache, cache_refresh=1)
    assert torch.equal(cached.sequences, plain.sequences)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cache_refresh_rebuilds_the_cache_every_k_passes_of_a_block(llama_lm, cache):
    out, seen = _decode_counting_inputs(llama_lm, cache, cache_refresh=3)
    full = [i for i, n in enumerate(seen) if n == out.prompt_ids.shape[1] + 24]
    assert full == [0, 3, 6, 8, 11, 14, 16, 19, 22]  # each block's first pass, then every third one
    assert (out.sequences != llama_lm.mask_token_id).all()


@pytest.mark.parametrize(("cache", "window"), [("none", 0), ("prefix", 0), ("dual", 0), ("dual", 4)])
def test_batch_decode_equals_one_by_one(llama_lm, cache, window):
    batch = _decode(llama_lm, cache, cache_window=window)
    alone = torch.cat([_decode(llama_lm, cache, prompts=[p], cache_window=window).sequences for p in PROMPTS])
    assert torch.equal(batch.sequences, alone)


def test_cache_window_recomputes_the_positions_after_the_block_at_every_pass(llama_lm):
    out, seen = _decode_counting_inputs(llama_lm, "dual", cache_window=4)
    P = out.prompt_ids.shape[1]
    assert seen[0] == seen[8] == seen[16] == P + 24  # the refreshes are unchanged
    assert (seen[1], seen[9], seen[17]) == (12, 12, 8)  # block + 4 later positions; the last block has none
    assert (out.sequences != llama_lm.mask_token_id).all()


def test_a_window_over_every_later_position_is_exactly_the_prefix_cache(llama_lm):
    # 24 positions in blocks of 8: at most 16 follow a block, so nothing after it stays cached
    prefix, prefix_seen = _decode_counting_inputs(llama_lm, "prefix")
    windowed, windowed_seen = _decode_counting_inputs(llama_lm, "dual", cache_window=16)
    assert windowed_seen == prefix_seen
    assert torch.equal(windowed.sequences, prefix.sequences)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_the_cache_runs_fewer_tokens_through_the_model_and_stays_close(llama_lm, cache):
    out, seen = _decode_counting_inputs(llama_lm, cache)
    P = out.prompt_ids.shape[1]
    assert len(seen) == out.nfe == 24
    assert seen[0] == P + 24 and seen[8] == P + 24  # each block's refresh is a full pass
    # later steps run on [block | later positions] (prefix) or the block alone (dual)
    assert (seen[1], seen[9], seen[17]) == ((24, 16, 8) if cache == "prefix" else (8, 8, 8))
    assert (out.sequences != llama_lm.mask_token_id).all()


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_trajectory_recorder_and_temporal_callback_work_unchanged(llama_lm, cache):
    from dllm_lab.tasks import get_task
    from dllm_lab.temporal import TemporalCallback

    task = get_task("arith", prompt_style="compact")
    examples = task.synthetic(2, seed=0)
    prompts = [task.build_prompt(e) for e in examples]
    cfg = DecodeConfig(gen_length=24, block_length=8, steps=24, cache=cache)
    callbacks = [TrajectoryRecorder(keep_entropy=True), TemporalCallback(llama_lm, task, examples)]
    out = decode(llama_lm, prompts, cfg, callbacks)
    plain = decode(llama_lm, prompts, cfg.replace(cache="none"), [TrajectoryRecorder(keep_entropy=True)])
    got, expected = out.extras["trajectory"], plain.extras["trajectory"]
    assert got.keys() == expected.keys()
    assert got["prediction"].shape == expected["prediction"].shape == (24, 2, 24)
    assert torch.equal(got["prediction"][-1], out.sequences.int())
    assert torch.equal(got["committed"].sum(0), torch.ones(2, 24, dtype=torch.long))  # each position once
    samples = out.extras["temporal"]
    assert len(samples) == 2 and all(len(s.answers) == 24 for s in samples)
    assert [s.answers[-1] for s in samples] == [task.parse_answer(t) for t in out.texts]


def test_a_model_that_cannot_cache_is_refused_before_any_pass(tiny_lm):
    calls = []
    tiny_lm.model.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ConfigError, match="cannot cache.*decoder.cache=none"):
        decode(tiny_lm, ["1+1"], DecodeConfig(gen_length=8, block_length=8, steps=8, cache="prefix"))
    assert not calls


@pytest.mark.parametrize(("change", "match"), [
    ({"cache": "kv"}, "choose one of"),
    ({"cache": "dual", "cfg_scale": 1.0}, "classifier-free guidance"),
    ({"cache": "dual", "cache_refresh": 0}, "cache_refresh"),
    ({"cache": "dual", "cache_window": -1}, "cache_window"),
    ({"cache": "prefix", "cache_window": 8}, "only the dual cache"),
])
def test_bad_cache_settings_name_the_fix(change, match):
    with pytest.raises(ConfigError, match=match):
        DecodeConfig(gen_length=16, block_length=8, steps=16, **change)


def test_a_saved_llama_loads_back_as_the_bidirectional_family(llama_lm, tmp_path):
    llama_lm.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert lm.family == "bidirectional" and lm.can_cache
    a, b = _decode(llama_lm, "dual"), _decode(lm, "dual")
    assert torch.equal(a.sequences, b.sequences)


def test_bidirectional_attention_sees_later_tokens(llama_lm):
    ids = torch.tensor([[5, 6, 7, 8]])
    changed = ids.clone()
    changed[0, 3] = 9
    with torch.no_grad():
        first, second = llama_lm.logits(ids), llama_lm.logits(changed)
    assert not torch.allclose(first[0, 0], second[0, 0])  # a causal model would give position 0 the same logits


SCRATCH_LLAMA = [
    "model=tiny_scratch", "model.init.arch=llama", "model.init.hidden_size=32", "model.init.num_layers=1",
    "model.init.num_heads=2", "model.init.intermediate_size=64", "model.init.corpus_examples=50",
    "data.num_eval=3", "data.eval_batch_size=3", "data.eval_tasks={arith: synthetic}", "decoder.gen_length=16",
    "decoder.block_length=8", "decoder.steps=16", "trainer.num_threads=1", "logger=none",
]


def test_an_eval_job_decodes_with_a_dual_cache_on_a_model_that_can(compose_cfg):
    from dllm_lab.runs import run_eval

    metrics = run_eval(compose_cfg("eval", [*SCRATCH_LLAMA, "decoder.cache=dual"]))
    assert metrics["eval/arith/samples"] == 3 and metrics["eval/arith/nfe"] == 16


def test_a_job_refuses_the_cache_on_the_embedded_model_before_decoding(compose_cfg, monkeypatch):
    import dllm_lab.runs.eval as eval_body
    from dllm_lab.runs import run_eval

    monkeypatch.setattr(eval_body, "evaluate", lambda *a, **k: pytest.fail("decoding started"))
    with pytest.raises(ConfigError, match=r"decoder.cache=prefix: .*cannot cache keys/values; set decoder.cache=none"):
        run_eval(compose_cfg("eval", ["decoder.cache=prefix", "logger=none"]))
