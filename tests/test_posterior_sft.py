"""Posterior SFT (algo=posterior_sft): the trace filter, the module end to end on a real-format file, rounds,
and the start-up checks (docs/methods.md "Posterior SFT")."""

from __future__ import annotations

import json
import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import RUN_DECODERS, small_decoder
from dllm_lab.errors import ConfigError
from dllm_lab.models import load_model
from dllm_lab.paths import project_root
from dllm_lab.rl.posterior import PosteriorSettings, filter_traces, trace_completion
from dllm_lab.runs import run_train

SHIPPED = project_root() / "checkpoints" / "tiny-mdlm"
SMALL = ["algo=posterior_sft", "data=single_task", f"model.name_or_path={SHIPPED}", "data.batch_size=2",
         "algo.num_traces=2", "data.num_eval=2", "data.eval_batch_size=2", "trainer.val_check_interval=100",
         "decoder.gen_length=64", "decoder.block_length=16", "decoder.steps=64", "algo.sampler.gen_length=80",
         "algo.sampler.steps=80", "trainer.num_threads=1", "logger=none", "eval_after_fit=false"]


def _trace(prompt, ll, ended=True, has_mask=False):
    return {"prompt_index": prompt, "answer_ll": ll, "ended": ended, "has_mask": has_mask, "reasoning": "r",
            "answer": "7"}


def test_the_filters_keep_what_they_say_and_never_an_invalid_trace():
    traces = [_trace(0, -0.1), _trace(0, -2.0), _trace(0, -0.5), _trace(1, -3.0), _trace(1, -0.05, ended=False),
              _trace(1, -0.01, has_mask=True), _trace(1, float("nan"))]
    likely = filter_traces(traces, PosteriorSettings(num_traces=4, filter="likelihood", tau=0.5))
    assert [t["answer_ll"] for t in likely] == [-0.1, -0.5], "ll >= log 0.5 = -0.693, valid only"
    top = filter_traces(traces, PosteriorSettings(num_traces=4, filter="top_fraction", top_fraction=0.5))
    assert sorted(t["answer_ll"] for t in top) == [-3.0, -0.5, -0.1], "the best 2 of each prompt's valid traces"
    everything = filter_traces(traces, PosteriorSettings(num_traces=4, filter="none"))
    assert len(everything) == 4, "no end, a mask or no score: dropped even without a filter"
    for key, value in [("filter", "best"), ("tau", 0.0), ("temperature", 0.0), ("resample_every", 0)]:
        with pytest.raises(ConfigError, match=f"algo.{key}"):
            PosteriorSettings(**{key: value})


def test_a_kept_trace_is_trained_in_the_normal_answer_format():
    from dllm_lab.decoding import DecodeConfig
    from dllm_lab.tasks import get_task

    task = get_task("arith", prompt_style="compact")
    text = trace_completion({"reasoning": "<reasoning>\n2+3=5\n", "answer": "5"}, DecodeConfig())
    assert text == "<reasoning>\n2+3=5\n</reasoning>\n<answer>\n\\boxed{5}\n</answer>"
    assert task.parse_answer(text) == 5.0, "the task's own parser reads it"


class _Keep(Callback):
    def on_train_end(self, trainer, pl_module):
        self.module = pl_module


def _gsm8k(path, n=8):
    rows = [{"question": f"Tom has {i} pens and gets {i + 2} more. How many pens?", "answer": f"#### {2 * i + 2}"}
            for i in range(n)]
    rows.insert(2, {"question": "no answer here"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_posterior_sft_trains_from_a_local_real_format_file(compose_cfg, tmp_path):
    """GSM8K rows without any reasoning (only '#### answer') are enough: traces come from the posterior."""
    source = _gsm8k(tmp_path / "gsm8k.jsonl")
    keep = _Keep()
    before = load_model(str(SHIPPED)).model.state_dict()
    metrics = run_train(compose_cfg("train", [*SMALL, "data.tasks=[gsm8k]", f"data.train_sources={{gsm8k: {source}}}",
                                              "data.eval_tasks={arith: synthetic}", "algo.filter=top_fraction",
                                              "trainer.max_steps=2"]), callbacks=[keep])
    module = keep.module
    assert 0.0 < metrics["train/kept_fraction"] <= 0.5 + 1e-6, "top half of each prompt's traces"
    assert math.isfinite(metrics["train/answer_ll"]) and metrics["train/answer_ll"] <= 0.0
    assert metrics["train/loss"] > 0
    traces = module.last_traces
    assert len(traces) == 4 and {t["task"] for t in traces} == {"gsm8k"}
    assert all(t["answer"] in {str(2 * i + 2) for i in range(8)} for t in traces), "conditioned on the gold answer"
    after = module.lm.model.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before), "the model was updated"
    sampler = module._sampler_copy[0].model.state_dict()
    assert all(torch.equal(before[k], sampler[k].cpu()) for k in before), "one round: traces from the initial model"


def test_rounds_sample_from_the_trained_model(compose_cfg):
    keep = _Keep()
    run_train(compose_cfg("train", [*SMALL, "data.tasks=[arith]", "algo.filter=none", "algo.resample_every=1",
                                    "trainer.max_steps=1"]), callbacks=[keep])
    assert keep.module._sampler_copy == [], "resample_every=1: the current model samples, no copy is kept"


def test_a_filter_that_keeps_nothing_stops_naming_itself(compose_cfg):
    # ll is a mean log-probability, so it is below 0 = log(1.0) for every trace: tau=1 keeps none
    cfg = compose_cfg("train", [*SMALL, "data.tasks=[arith]", "algo.tau=1.0", "algo.max_empty_batches=2",
                                "trainer.max_steps=3"])
    with pytest.raises(ConfigError, match=r"kept no trace in 2 batches in a row.*algo\.filter=likelihood with "
                                          r"algo\.tau=1\.0"):
        run_train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", RUN_DECODERS)
def test_posterior_sft_runs_with_every_run_decoder(decoder, compose_cfg, tiny_model_dir):
    """The run's decoder validates and lends the sampler its canvas; adaptive ones (steps=null) included."""
    cfg = compose_cfg("train", [*SMALL, f"decoder={decoder}", f"model.name_or_path={tiny_model_dir}",
                                "data.tasks=[arith]", "data.weights=[1.0]", "algo.filter=none",
                                "trainer.fast_dev_run=true"])
    for key, value in small_decoder(decoder, 32).items():  # the sampler's template needs 32 tokens
        cfg.decoder[key] = value
    for key in ("gen_length", "block_length", "steps"):  # back to the defaults: the run decoder's canvas
        cfg.algo.sampler[key] = f"${{decoder.{key}}}"
    metrics = run_train(cfg)
    assert math.isfinite(metrics["train/answer_ll"]) and metrics["train/answer_ll"] <= 0.0, "every trace scored"
    assert metrics["train/sample_s"] > 0 and math.isfinite(metrics["train/loss"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.tasks=[countdown]"], r"posterior_sft conditions on each prompt's gold answer.*countdown"),
        (["data.tasks=[arith]", "algo.sampler_preset=semi_ar"], r"algo.sampler_preset=semi_ar: .*posterior=true"),
        (["data.tasks=[arith]", "algo.filter=best"], r"algo.filter='best'"),
    ],
)
def test_bad_posterior_runs_fail_at_start(compose_cfg, overrides, message):
    from dllm_lab.factory import build_job

    with pytest.raises(ConfigError, match=message):
        build_job(compose_cfg("train", [*SMALL, *overrides]), "train")


def test_the_study_table_pairs_every_seed_with_the_base_on_the_same_problems():
    from dllm_lab.evaluation.posterior_report import study_rows, study_table

    base = {"arith": {i: float(i % 2) for i in range(200)}}  # 0.5
    better = {i: 1.0 if i % 2 or i % 4 == 0 else 0.0 for i in range(200)}  # 0.75, never worse than base
    found = {"psft_base": {0: {"correct": base, "minutes": 1.0}},
             "psft_posterior": {s: {"correct": {"arith": better}, "minutes": 2.0} for s in (0, 1, 2)},
             "psft_gold": {0: {"correct": base, "minutes": 1.0}}}
    rows = study_rows(found)
    posterior = next(r for r in rows if r["arm"] == "psft_posterior")
    assert posterior["seeds"] == [0, 1, 2] and posterior["problems"] == 200
    assert posterior["delta"] == pytest.approx(0.25) and 0.15 < posterior["low"] < 0.25 < posterior["high"]
    gold = next(r for r in rows if r["arm"] == "psft_gold")
    assert (gold["delta"], gold["low"], gold["high"]) == (0.0, 0.0, 0.0)
    table = study_table(rows)
    assert "+0.250 [" in table and "(not resolved)" in table.splitlines()[-1]
    with pytest.raises(RuntimeError, match="experiment=psft_base"):
        study_rows({"psft_posterior": found["psft_posterior"]})


def test_the_report_resumes_from_its_per_problem_file_when_mlflow_has_only_new_runs(tmp_path, monkeypatch):
    from dllm_lab.evaluation import posterior_report, study_runs

    base = {"arith": {i: float(i % 2) for i in range(40)}}
    worse = {"arith": {i: 0.0 for i in range(40)}}
    first = {"psft_base": {0: {"correct": base, "minutes": 1.0}},
             "psft_gold": {0: {"correct": worse, "minutes": 2.0}}}
    monkeypatch.setattr(study_runs, "newest_runs", lambda uri, arms, extra=None: first)
    posterior_report.write_report("unused", tmp_path)
    # a new sitting with an empty store runs seed 1 only, and reruns seed 0 with another result
    second = {"psft_gold": {0: {"correct": base, "minutes": 3.0}, 1: {"correct": worse, "minutes": 2.0}}}
    monkeypatch.setattr(study_runs, "newest_runs", lambda uri, arms, extra=None: second)
    posterior_report.write_report("unused", tmp_path)
    gold = next(r for r in json.loads((tmp_path / "results.json").read_text()) if r["arm"] == "psft_gold")
    assert gold["seeds"] == [0, 1] and gold["accuracy"] == [0.5, 0.0] and gold["minutes"] == 2.5
    assert study_runs.load_ledger(tmp_path / "per_problem.json")["psft_base"][0]["correct"] == base
    assert (tmp_path / "vs_base.png").stat().st_size > 0
