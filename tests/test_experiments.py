"""Every experiment config composes and runs with fast-dev settings; bad overrides fail at start."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from dllm_lab.decoding import DecodeConfig
from dllm_lab.errors import ConfigError
from dllm_lab.factory import load_decoder_preset, scale_decoder
from dllm_lab.paths import config_dir, project_root
from dllm_lab.runs import run_eval, run_train

EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml") if p.stem != "base")
TINY_INIT = [
    "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50",
]
FAST = [
    "data.num_eval=4", "data.eval_batch_size=4", "data.batch_size=4", "data.num_val_batches=1",
    "data.min_response_length=0", "data.long_response_prob=0.0",
    "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8",
]


def entry_of(name: str) -> str:
    return yaml.safe_load((config_dir() / "experiment" / f"{name}.yaml").read_text()).get("entry", "train")


def test_every_experiment_declares_its_entry_point():
    assert EXPERIMENTS, "no experiment configs found"
    for name in EXPERIMENTS:
        assert entry_of(name) in ("train", "eval"), f"{name}: set `entry: train` or `entry: eval`"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_fast_dev(name, compose_cfg, tmp_path):
    entry = entry_of(name)
    cfg = compose_cfg(entry, [f"experiment={name}"])
    overrides = [f"experiment={name}", *FAST, "logger=none"]
    if cfg.decoder.schedule == "ascending":  # ASS derives its steps: log2(16) = 4
        overrides.append("decoder.steps=null")
    if cfg.model.get("init"):
        overrides += TINY_INIT
    elif not Path(str(cfg.model.name_or_path)).exists():  # stages 2 and 3 start from unshipped stages
        overrides += [f"model.name_or_path={project_root() / 'checkpoints' / 'tiny-mdlm'}"]
    if cfg.get("sweep"):
        # a sweep's variants may fix their own full lengths: one task, and the baseline with the first and last
        # other decoder (every preset decodes in the algo x decoder tests; this one tests the sweep's plumbing)
        others = [d for d in cfg.sweep.decoders if d != cfg.sweep.baseline]
        decoders = [*([cfg.sweep.baseline] if cfg.sweep.baseline else []), *dict.fromkeys(others[:1] + others[-1:])]
        overrides += ["sweep.gen_lengths=[32]", f"sweep.output_dir={tmp_path}/sweep", "data.tasks=[arith]",
                      "data.weights=[1.0]", f"sweep.decoders=[{','.join(decoders)}]"]
    if entry == "train":
        overrides += ["trainer.fast_dev_run=true", f"export_dir={tmp_path}/export"]
        metrics = run_train(compose_cfg("train", overrides))
        if cfg.algo.kind == "grpo":  # a GRPO loss is advantage-weighted: ~0 when a group's rewards are equal
            assert math.isfinite(metrics["train/loss"]) and "train/reward" in metrics
        else:
            assert metrics["train/loss"] > 0
    else:
        metrics = run_eval(compose_cfg("eval", overrides))
    if cfg.get("sweep"):
        rows = metrics["rows"]
        assert {r["decoder"] for r in rows} == set(decoders)
        assert (tmp_path / "sweep" / "results.md").exists() and (tmp_path / "sweep" / "accuracy_vs_nfe.png").exists()
        accuracies = [r["accuracy"] for r in rows]
    else:
        accuracies = [v for k, v in metrics.items() if k.endswith("/accuracy")]
    assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)


def test_typo_in_an_override_names_the_key(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="max_step"):
        compose_cfg("train", ["trainer.max_step=5"])


def test_unknown_group_option_lists_the_choices(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="semi_ar"):
        compose_cfg("eval", ["decoder=semi_autoregressive"])


def test_sweep_lengths_are_valid_for_every_preset_and_ass_keeps_its_blocks():
    """The ablation moves each preset to other lengths; every power of two from 32 to 256 must stay valid."""
    ass = load_decoder_preset("ass")
    for gen_length in (32, 64, 128, 256):
        for name in PRESETS:
            DecodeConfig.from_dict(scale_decoder(load_decoder_preset(name), gen_length))
        moved = scale_decoder(ass, gen_length)
        assert moved["gen_length"] // moved["block_length"] == ass["gen_length"] // ass["block_length"]
    semi_ar = scale_decoder(load_decoder_preset("semi_ar"), 128)
    assert (semi_ar["block_length"], semi_ar["steps"]) == (16, 128)  # linear: same block and tokens per step


def test_a_sweep_checks_every_setting_before_decoding_any(compose_cfg, tmp_path):
    out = tmp_path / "sweep"
    cfg = compose_cfg("eval", ["experiment=decoding_ablation", "sweep.gen_lengths=[64,96]", "logger=none",
                               f"sweep.output_dir={out}", "data.num_eval=2"])
    with pytest.raises(ConfigError, match=r"decoder=ass, gen_length=96: .*power of two"):
        run_eval(cfg)
    assert not out.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["decoder.block_length=24"], r"decoder\.block_length"),
        (["decoder.steps=3"], r"decoder\.steps"),
        (["data.tasks=[arith,gsm9k]", "data.weights=[1,1]"], r"unknown task 'gsm9k'"),
        (["data.weights=[1.0]"], r"data\.weights"),
        (["data.batch_size=0"], r"data\.batch_size"),
        (["algo.lr=-1"], r"algo\.lr"),
        (["+data.task_options.equations.context_line=2"], r"task_options\.equations.*context_line"),
        (["+data.task_options.equations.context_lines=-1"], r"task_options\.equations.*non-negative"),
        (["+data.task_options.gsm9k.x=1"], r"task_options\.gsm9k: unknown task"),
        (["data.block_noise_prob=1.5"], r"data\.block_noise_prob=1\.5 must be a probability"),
        (["data.block_noise_length=0"], r"data\.block_noise_length=0 must be at least 1"),
    ],
)
def test_impossible_values_fail_before_building_anything(compose_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_train(compose_cfg("train", [*overrides, "logger=none"]))


def test_experiment_for_the_other_entry_point_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match="dllm-eval"):
        run_train(compose_cfg("train", ["experiment=quickstart", "logger=none"]))


def test_decoder_key_typo_is_refused(compose_cfg):
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="gen_len"):
        compose_cfg("eval", ["decoder.gen_len=16"])


def test_no_absolute_paths_in_configs():
    for path in Path(config_dir()).rglob("*.yaml"):
        for line in path.read_text().splitlines():
            value = line.split(":", 1)[-1].strip()
            assert not value.startswith("/"), f"{path}: absolute path {value!r}; use ${{paths.root_dir}}"


@pytest.mark.parametrize("name", sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml")))
def test_decoder_presets_compose_with_every_field(compose_cfg, name):
    """`decoder=<preset>` gives the full mapping (so any field can be overridden) equal to the preset."""
    from dllm_lab.factory import load_decoder_preset

    cfg = compose_cfg("eval", [f"decoder={name}", "decoder.seed=3"])
    assert dict(cfg.decoder) == {**load_decoder_preset(name), "seed": 3}


def test_paired_bootstrap_resolves_a_real_shift_and_not_noise():
    from dllm_lab.evaluation.stats import paired_bootstrap, seed_problem_bootstrap

    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.4).astype(float)
    better = np.where(rng.random(400) < 0.2, 1.0, base)  # ~+0.12 on the same problems
    shift = paired_bootstrap(better, base)
    assert shift.resolved and 0.08 < shift.estimate < 0.16 and shift.low < shift.estimate < shift.high
    same = paired_bootstrap(base, base)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.resolved
    noise = paired_bootstrap(np.roll(base, 1), base)
    assert not noise.resolved and "not resolved" in noise.cell()
    seeds = seed_problem_bootstrap([better, base, better], base)
    assert seeds.low < seeds.estimate < seeds.high and seeds.high - seeds.low > shift.high - shift.low
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_group_bootstrap_separates_two_groups_and_not_one_split_in_two():
    from dllm_lab.evaluation.stats import group_bootstrap

    rng = np.random.default_rng(1)
    wrong, correct = rng.normal(0.5, 0.2, 150), rng.normal(0.3, 0.2, 250)
    gap = group_bootstrap(wrong, correct)
    assert gap.resolved and 0.15 < gap.estimate < 0.25 and gap.low < gap.estimate < gap.high
    halves = group_bootstrap(correct[:125], correct[125:])
    assert not halves.resolved
    with pytest.raises(ValueError, match="non-empty"):
        group_bootstrap([], [1.0])


def test_temporal_differences_pair_votes_with_the_final_answer_of_the_same_sample():
    import pandas as pd

    from dllm_lab.evaluation.report import temporal_differences, temporal_intervals_table

    n = 200
    final = np.arange(n) % 2 == 0                    # half right at the last step
    vote = final | (np.arange(n) % 4 == 1)           # the vote also rescues a quarter: +0.25
    records = pd.DataFrame({"task": "arith", "gen_length": 64, "sample_id": np.arange(n)[::-1],
                            "final_correct": final, "tse": np.where(final, 0.1, 0.4),
                            **{f"vote_{w}_correct": vote for w in ("fixed", "linear", "exp")}})
    (row,) = temporal_differences(records)
    assert row["samples"] == n and row["tcv_exp"].estimate == pytest.approx(0.25) and row["tcv_exp"].resolved
    assert row["tse_gap"].estimate == pytest.approx(0.3)
    same = temporal_differences(records.assign(vote_exp_correct=final))[0]["tcv_exp"]
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    all_right = temporal_differences(records.assign(final_correct=True))[0]
    assert "tse_gap" not in all_right           # no wrong samples: no gap, and the table shows "-"
    assert temporal_intervals_table(records.assign(final_correct=True)).splitlines()[-1].endswith("| - |")


def test_a_sweep_compares_every_setting_with_its_baseline_on_the_same_problems(compose_cfg, tmp_path):
    out = tmp_path / "sweep"
    cfg = compose_cfg("eval", [
        "experiment=decoding_ablation", "logger=none", f"sweep.output_dir={out}", "data.num_eval=6",
        "data.eval_batch_size=6", "temporal.enabled=false", "sweep.decoders=[semi_ar,threshold,ee_loose]",
        "sweep.gen_lengths=[32,64]", "~sweep.decoders_at", "+sweep.decoders_at={64: [semi_ar, ee_loose]}",
        "+sweep.variants={ee_loose: {preset: infill_early_exit, early_exit_threshold: 5.0}}", "sweep.baseline=semi_ar",
        "data.eval_tasks={arith: synthetic}"])
    rows = run_eval(cfg)["rows"]
    assert [(r["decoder"], r["gen_length"]) for r in rows] == [
        ("semi_ar", 32), ("semi_ar", 64), ("threshold", 32), ("ee_loose", 32), ("ee_loose", 64)]
    base = {r["gen_length"]: r for r in rows if r["decoder"] == "semi_ar"}
    for r in rows:
        assert r["delta_low"] <= r["delta"] <= r["delta_high"]
        assert r["delta"] == pytest.approx(r["accuracy"] - base[r["gen_length"]]["accuracy"]), "same L, same problems"
    assert all(r["delta"] == 0.0 for r in base.values())
    ee = next(r for r in rows if r["decoder"] == "ee_loose" and r["gen_length"] == 64)
    assert ee["nfe"] < base[64]["nfe"], "a loose threshold exits early"
    text = (out / "results.md").read_text()
    assert "vs semi_ar [95% CI]" in text and "paired bootstrap" in text
    assert (out / "difference_vs_baseline.png").stat().st_size > 0
