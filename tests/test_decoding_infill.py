"""Reasoning-as-infilling (No Compute Left Behind): template, early exit, posterior sampling, and the
errors ``decode`` raises before any forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from dllm_lab.decoding import DecodeConfig, InfillTemplate, TrajectoryRecorder, decode, linear_counts
from dllm_lab.errors import ConfigError
from test_decoding_engine import PROMPTS, ScriptedLM

# -- reasoning-as-infilling, early exit, posterior -----------------------------------------------------------
INFILL = {"gen_length": 64, "block_length": 16, "steps": 64, "infill": True}


def template_of(lm, cfg):
    return InfillTemplate.from_config(cfg, lm.tokenizer)


def test_template_is_prefilled_and_never_changed(tiny_lm):
    cfg = DecodeConfig(**INFILL)
    tpl = template_of(tiny_lm, cfg)
    region, fixed = tpl.canvas(3, tiny_lm.mask_token_id, tiny_lm.eos_token_ids[0])
    assert tpl.length == 64 and fixed[0].sum() == len(tpl.delimiter) + len(tpl.closing)
    rec = TrajectoryRecorder()
    out = decode(tiny_lm, PROMPTS, cfg, [rec])
    assert torch.equal(out.sequences[fixed], region[fixed])
    committed = out.extras["trajectory"]["committed"]  # (S, B, L)
    assert not committed.any(0)[fixed].any() and (committed.sum(0)[~fixed] == 1).all()
    assert out.nfe == (~fixed[0]).sum()  # the last block's pre-filled tokens cost no step
    assert "</reasoning>\n<answer>\n\\boxed{" in out.texts[0], "the d1 answer format by default"


def rec_committed(out):
    return out.extras["trajectory"]["committed"].any(0)


def test_early_exit_stops_sooner_and_fills_the_answer(tiny_lm):
    cfg = DecodeConfig(**INFILL, early_exit=True)
    tpl = template_of(tiny_lm, cfg)
    closing = len(tpl.closing)  # the answer block ends `closing` tokens before the end of the canvas
    lm = ScriptedLM(tiny_lm, answer_peak=range(closing, closing + tpl.answer_length), answer_after=5)
    full = decode(lm, PROMPTS, cfg.replace(early_exit=False))
    lm.start_masks, lm.calls = None, 0
    out = decode(lm, PROMPTS, cfg, [TrajectoryRecorder()])
    info = out.extras["early_exit"]
    assert info["exited"].all() and out.nfe == 6 < full.nfe  # 5 reasoning tokens, then the exiting pass
    assert torch.equal(info["nfe_saved"], full.nfe_per_sample - out.nfe_per_sample)
    answer = tpl.answer_mask()
    assert (out.sequences[:, answer] == 26).all()  # argmax of the exiting pass
    region, fixed = tpl.canvas(3, lm.mask_token_id, lm.eos_token_ids[0])
    assert torch.equal(out.sequences[fixed], region[fixed])
    assert (out.sequences == lm.mask_token_id).sum(1).tolist() == [tpl.reasoning_length - 6] * 3
    assert rec_committed(out)[:, answer].all()  # the fill is part of the last step's commit
    # mean reduction exits at the same point here; a threshold nothing reaches never exits
    mean = decode(lm, PROMPTS, cfg.replace(early_exit_reduction="mean"))
    assert mean.nfe == 6
    never = decode(tiny_lm, PROMPTS, cfg.replace(early_exit_threshold=0.0))
    assert not never.extras["early_exit"]["exited"].any() and never.nfe == full.nfe


def test_posterior_mode_keeps_the_gold_answer(tiny_lm):
    cfg = DecodeConfig(**INFILL)
    out = decode(tiny_lm, PROMPTS[:2], cfg, [TrajectoryRecorder()], answers=["42", [26, 24, 26]])
    tpl = template_of(tiny_lm, cfg)
    a0 = tpl.answer_start
    gold = tiny_lm.tokenizer.encode("42", add_special_tokens=False)
    assert out.sequences[0, a0 : a0 + len(gold) + len(tpl.closing)].tolist() == gold + list(tpl.closing)
    assert out.sequences[1, a0 : a0 + 3 + len(tpl.closing)].tolist() == [26, 24, 26, *tpl.closing]
    assert not rec_committed(out)[:, a0:].any()  # only the reasoning is decoded
    assert not (out.sequences == tiny_lm.mask_token_id).any()
    assert out.nfe == tpl.reasoning_length and "42}" in out.texts[0]


def test_posterior_mode_refuses_a_missing_gold_answer_by_row(tiny_lm):
    """A problem without a gold answer (countdown's is None) is named, not a TypeError from the tokenizer."""
    with pytest.raises(ValueError, match=r"answers\[1\] is None \(1 of 2 rows\).*countdown"):
        decode(tiny_lm, PROMPTS[:2], DecodeConfig(**INFILL), answers=["42", None])


def test_decode_time_errors_come_before_any_forward_pass(tiny_lm):
    lm = ScriptedLM(tiny_lm)
    with pytest.raises(ConfigError, match=r"decoder\.gen_length"):  # delimiter + answer + closing > 16
        decode(lm, PROMPTS, DecodeConfig(gen_length=16, block_length=8, steps=8, infill=True))
    with pytest.raises(ConfigError, match=r"decoder\.infill=true"):
        decode(lm, PROMPTS[:1], DecodeConfig(), answers=["1"])
    with pytest.raises(ConfigError, match=r"decoder\.infill_answer_length"):
        decode(lm, PROMPTS[:1], DecodeConfig(**INFILL, infill_answer_length=1), answers=["12345"])
    with pytest.raises(ConfigError, match=r"decoder\.early_exit"):
        decode(lm, PROMPTS[:1], DecodeConfig(**INFILL, early_exit=True), answers=["1"])
    assert lm.calls == 0
    assert linear_counts(torch.tensor([3]), 4).tolist() == [[1, 1, 1, 0]]  # pre-filled rows: zero-count steps


def test_answer_log_likelihood_by_hand():
    from dllm_lab.decoding import answer_log_likelihood

    logits = torch.zeros(2, 3, 4)
    logits[0, 1, 2] = 2.0  # row 0: position 1 predicts token 2 with p = e^2 / (e^2 + 3)
    targets = torch.tensor([[0, 2, 0], [1, 1, 1]])
    positions = torch.tensor([[False, True, True], [False, False, False]])
    score = answer_log_likelihood(logits, targets, positions)
    expected = (math.log(math.exp(2) / (math.exp(2) + 3)) + math.log(1 / 4)) / 2
    assert score[0].item() == pytest.approx(expected, abs=1e-6) and math.isnan(score[1].item())


def test_answer_likelihood_callback_scores_from_the_steps_own_pass(tiny_lm):
    """No extra forward pass: the first step's score equals the score of a separate pass on its input."""
    from dllm_lab.decoding import AnswerLikelihood, SpeedMeter, answer_log_likelihood
    from dllm_lab.decoding.infill import encode_answers

    cfg = DecodeConfig(gen_length=32, block_length=32, steps=16, infill=True, infill_reasoning_length=12,
                       infill_answer_length=4, infill_delimiter="</reasoning>\n<answer>\n\\boxed{",
                       infill_closing="}")
    template = InfillTemplate.from_config(cfg, tiny_lm.tokenizer)
    gold = encode_answers(tiny_lm.tokenizer, ["12", "7"])
    seen = []

    class Inputs(AnswerLikelihood):  # records each pass' input canvas next to the score
        def on_forward(self, state):
            seen.append(state.canvas.clone())
            super().on_forward(state)

    out = decode(tiny_lm, ["What is 5+7?", "What is 3+4?"], cfg, [Inputs(template, gold), SpeedMeter()])
    record = out.extras["answer_likelihood"]
    assert record["score"].shape == (len(seen), 2) and out.nfe == len(seen)
    P = out.prompt_ids.shape[1]
    targets = torch.zeros(2, 32, dtype=torch.long)
    positions = torch.zeros(2, 32, dtype=torch.bool)
    for b, ids in enumerate(gold):
        targets[b, template.answer_start : template.answer_start + len(ids)] = torch.tensor(ids)
        positions[b, template.answer_start : template.answer_start + len(ids)] = True
    with torch.no_grad():
        logits = tiny_lm.logits(seen[0], torch.ones_like(seen[0]))[:, P:].clone()
    logits[..., tiny_lm.mask_token_id] = float("-inf")  # the decoder never proposes the mask token
    torch.testing.assert_close(record["score"][0], answer_log_likelihood(logits, targets, positions),
                               rtol=1e-4, atol=1e-4)
    assert (record["reasoning_unmasked"][0] == 0).all() and (record["reasoning_unmasked"].diff(dim=0) >= 0).all()


def test_posterior_decoding_from_configs_writes_traces_with_their_answer_likelihood(compose_cfg, tiny_model_dir,
                                                                                   tmp_path):
    import pandas as pd

    from dllm_lab.runs import run_eval

    metrics = run_eval(compose_cfg("eval", [
        f"model.name_or_path={tiny_model_dir}", "decoder=posterior", "decoder.gen_length=48",
        "decoder.block_length=48", "decoder.steps=24", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}",
        "data.num_eval=3", "data.eval_batch_size=3", "trainer.num_threads=1", "print_table=false",
        "temporal.enabled=false"]))
    for task in ("arith", "sudoku4"):
        traces = pd.read_parquet(tmp_path / "posterior" / f"{task}.parquet")
        assert len(traces) == 3 and list(traces["sample_id"]) == [0, 1, 2]
        assert traces["answer_ll"].lt(0).all() and traces["reasoning"].map(lambda r: isinstance(r, str)).all()
        assert metrics[f"eval/{task}/posterior_answer_ll"] == pytest.approx(traces["answer_ll"].mean(), rel=1e-6)
    assert "answer log-lik" in metrics["table"]


def test_posterior_decoding_needs_a_gold_answer(compose_cfg):
    from dllm_lab.runs import run_eval

    with pytest.raises(ConfigError, match=r"decoder\.posterior.*\['countdown'\]"):
        run_eval(compose_cfg("eval", ["decoder=posterior", "logger=none", "model.name_or_path=/nonexistent"]))
    with pytest.raises(ConfigError, match=r"decoder\.posterior.*infill=true"):
        DecodeConfig(posterior=True)
