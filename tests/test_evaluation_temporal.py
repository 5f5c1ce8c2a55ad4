"""Temporal signals in evaluation: metrics, parquet records, plots, tables, settings, DDP equality."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest

from dllm_lab.errors import ConfigError
from dllm_lab.evaluation import module as eval_module
from dllm_lab.evaluation.report import format_table, temporal_table
from dllm_lab.evaluation.sweep import results_markdown, summary_table
from dllm_lab.runs import run_eval
from dllm_lab.tasks import get_task
from dllm_lab.tasks.arith import Arith
from dllm_lab.temporal import (
    TemporalSample,
    TemporalSettings,
    latest_temporal_run,
    load_temporal_run,
    read_records,
    results_from_metrics,
    temporal_records,
    write_records,
)
from dllm_lab.temporal import plots as temporal_plots
from dllm_lab.temporal.plots import plot_all, timeline_matrix

TINY = ["data.num_eval=5", "data.eval_batch_size=3", "decoder.gen_length=16", "decoder.block_length=8",
        "decoder.steps=8", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}", "trainer.num_threads=1"]
TASKS = ("arith", "sudoku4")
TEMPORAL_KEYS = ("tcv_fixed_accuracy", "tcv_linear_accuracy", "tcv_exp_accuracy", "everpass", "correct_then_wrong",
                 "answer_changes", "tse_mean", "tse_confidence_mean")


def _eval(compose_cfg, tiny_model_dir, *extra: str) -> dict:
    return run_eval(compose_cfg("eval", [f"model.name_or_path={tiny_model_dir}", *TINY, *extra]))


def _run(experiment: str = "dllm-lab/eval", name: str | None = None):
    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name(experiment).experiment_id)
    return client, next(r for r in runs if name is None or r.info.run_name == name)


def _check_temporal_metrics(metrics: dict, prefix: str = "eval") -> None:
    for task in TASKS:
        for key in TEMPORAL_KEYS:
            value = metrics[f"{prefix}/{task}/{key}"]
            assert math.isfinite(value), key
            if key not in ("answer_changes", "tse_mean"):
                assert 0.0 <= value <= 1.0, (key, value)
        for key in ("tse_correct_mean", "tse_wrong_mean"):  # absent when the group is empty, never NaN
            assert math.isfinite(metrics.get(f"{prefix}/{task}/{key}", 0.0))
        assert metrics[f"{prefix}/{task}/everpass"] >= metrics[f"{prefix}/{task}/accuracy"]


def _answers_from_text_length(monkeypatch) -> None:
    """The random tiny model never writes a parsable answer; so that votes, EverPass and TSE of correct
    samples get exercised end to end, arith "parses" the length of the text mod 3 and the gold is 1
    (with sampling, so that the texts change between steps)."""
    monkeypatch.setattr(Arith, "parse_answer", lambda self, text: float(len(text) % 3))
    monkeypatch.setattr(Arith, "gold", lambda self, example: 1.0)


def test_eval_logs_temporal_metrics_records_and_plots(compose_cfg, tiny_model_dir, tmp_path, monkeypatch):
    _answers_from_text_length(monkeypatch)
    titles = []
    save = temporal_plots.save_figure
    monkeypatch.setattr(temporal_plots, "save_figure", lambda fig, path: titles.append(fig._suptitle.get_text())
                        or save(fig, path))
    metrics = _eval(compose_cfg, tiny_model_dir, "decoder.temperature=1.0", "decoder.seed=0")
    _check_temporal_metrics(metrics)
    assert metrics["eval/arith/parse_rate"] == 1.0 and metrics["eval/sudoku4/parse_rate"] == 0.0
    assert "eval/sudoku4/tse_correct_mean" not in metrics  # no correct sample: left out, not NaN
    assert "TCV exp" in metrics["table"] and "EverPass" in metrics["table"]

    client, run = _run()
    _check_temporal_metrics(run.data.metrics)
    assert not any(math.isnan(v) for v in run.data.metrics.values())
    assert run.data.tags["temporal"] == "true"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {f"plots/{p}.png" for p in ("answer_timeline", "tse_distribution", "temporal_accuracy")}
    assert len(titles) == 3 and all(f"run {run.info.run_name}" in t and "(L=16, " in t for t in titles), titles
    for task in TASKS:
        path = client.download_artifacts(run.info.run_id, f"temporal/{task}.parquet", str(tmp_path / "dl"))
        records = read_records(path)
        assert len(records) == 5 and sorted(records["sample_id"]) == list(range(5))
        assert (records["num_steps"] == records["step_answers"].map(len)).all()
        assert (records["step_correct"].map(lambda c: c[-1]) == records["final_correct"]).all()
        # the record's final correctness is the logged accuracy; its votes give the TCV accuracy
        assert records["final_correct"].mean() == pytest.approx(metrics[f"eval/{task}/accuracy"])
        assert records["vote_exp_correct"].mean() == pytest.approx(metrics[f"eval/{task}/tcv_exp_accuracy"])
        assert records["ever_correct"].mean() == pytest.approx(metrics[f"eval/{task}/everpass"])
    # also written next to the run's outputs, and readable back through the notebook's loader
    assert (tmp_path / "temporal" / "arith.parquet").exists() and (tmp_path / "plots" / "answer_timeline.png").exists()
    print(metrics["table"])
    assert latest_temporal_run(client) == run.info.run_id
    loaded = load_temporal_run(client, run.info.run_id, tmp_path / "loaded")
    assert len(loaded.records) == 10 and {r["task"] for r in loaded.rows} == set(TASKS)
    assert all(r["gen_length"] == 16 for r in loaded.rows)


def test_temporal_voting_study_writes_table_and_plots(compose_cfg, tiny_model_dir, tmp_path):
    out = tmp_path / "study"
    result = run_eval(compose_cfg("eval", [
        "experiment=temporal_voting", f"model.name_or_path={tiny_model_dir}", "data.num_eval=3",
        "data.eval_batch_size=3", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}", "sweep.gen_lengths=[16,32]",
        f"sweep.output_dir={out}", "trainer.num_threads=1", "print_table=false",
    ]))
    table = (out / "temporal_table.md").read_text()
    assert table == result["temporal_table"]
    table_1, note, intervals = table.strip().split("\n\n")
    assert len(table_1.splitlines()) == len(intervals.splitlines()) == 2 + 2 * len(TASKS)
    assert "| arith | 32 | 3 |" in table_1 and "TCV exp" in table_1 and "EverPass" in table_1
    assert "TCV exp - final [95% CI]" in intervals and "paired" in note
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "answer_timeline.png", "temporal_accuracy.png", "tse_distribution.png"]
    client = mlflow.MlflowClient()
    parent = latest_temporal_run(client, "dllm-lab/temporal_voting")
    assert {a.path for a in client.list_artifacts(parent, "plots")} >= {"plots/answer_timeline.png"}
    loaded = load_temporal_run(client, parent, tmp_path / "loaded")  # a sweep parent: its children's records
    assert len(loaded.records) == 3 * len(TASKS) * 2 and set(loaded.records["decoder"]) == {"semi_ar"}
    assert sorted((r["task"], r["gen_length"]) for r in loaded.rows) == [(t, L) for t in TASKS for L in (16, 32)]


def test_temporal_can_be_switched_off(compose_cfg, tiny_model_dir):
    metrics = _eval(compose_cfg, tiny_model_dir, "temporal.enabled=false", "logger=none")
    assert "eval/arith/accuracy" in metrics and not any("tcv" in k or "everpass" in k for k in metrics)
    assert "TCV" not in metrics["table"]


@pytest.mark.parametrize(
    ("override", "message"),
    [("temporal.vote_alpha=-1", r"temporal\.vote_alpha"), ("temporal.vote_weightings=[exp,cubic]", "cubic"),
     ("temporal.tse_skip_ratio=1.5", r"temporal\.tse_skip_ratio"), ("+temporal.alpha=3", r"temporal\.alpha")],
)
def test_bad_temporal_settings_fail_before_loading_the_model(compose_cfg, override, message):
    cfg = compose_cfg("eval", ["model.name_or_path=/nonexistent", override, "logger=none"])
    with pytest.raises(ConfigError, match=message):
        run_eval(cfg)


def _sample(answers, correct, tse=0.5) -> TemporalSample:
    return TemporalSample(answers=answers, steps=list(range(len(answers))), correct=correct,
                          votes={"exp": answers[-1]}, vote_correct={"exp": correct[-1]}, tse=tse, confidence=0.5,
                          answer_changes=0)


def test_records_roundtrip_keeps_unparsed_steps_and_sorts(tmp_path):
    samples = [_sample([None, None], [False, False]), _sample(["3", None, "4"], [True, False, False])]
    rows = temporal_records(samples, "arith", [7, 2], gen_length=16)
    frame = read_records(write_records(rows, tmp_path / "r.parquet"))
    assert list(frame["sample_id"]) == [2, 7]
    assert frame.loc[1, "step_answers"] == [None, None] and frame.loc[1, "final_answer"] is None
    assert frame.loc[0, "step_answers"] == ["3", None, "4"] and bool(frame.loc[0, "correct_then_wrong"])
    assert timeline_matrix(frame["step_answers"], frame["step_correct"]).shape == (2, 3)


def test_tables_and_plots_never_show_nan(tmp_path):
    base = {"accuracy": 0.0, "parse_rate": 0.0, "nfe": 8.0, "tokens_per_s": 10.0, "samples": 2.0,
            "tcv_exp_accuracy": 0.0, "everpass": 0.0, "tse_wrong_mean": 1.2}
    results = {"arith": base, "sudoku4": {**base, "accuracy": 0.5, "tse_correct_mean": 0.1}}
    table = format_table(results)
    assert "nan" not in table.lower() and "TCV exp" in table and "TCV fixed" not in table
    assert table.splitlines()[2].endswith("| - | 1.200 |")  # arith has no correct sample: '-', not nan
    flat = {f"eval/{t}/{k}": v for t, r in results.items() for k, v in r.items()}
    assert results_from_metrics(flat, ["arith", "sudoku4", "countdown"]) == results
    rows = [{"task": "arith", "gen_length": L, **base} for L in (16, 32)]
    table = temporal_table(rows)
    assert "nan" not in table.lower() and table.count("\n") == 3
    assert eval_module._finite({"accuracy": 0.5, "tse_mean": float("nan"), "nfe": float("inf")}, "arith") == {
        "accuracy": 0.5}  # what reaches MLflow
    samples = [_sample(["1", "2"], [False, False], tse=float("nan")), _sample([None, "5"], [False, True])]
    records = pd.DataFrame(temporal_records(samples, "arith", [0, 1], 16))
    assert all(p.stat().st_size > 0 for p in plot_all(records, rows[:1], tmp_path))


def test_sweep_summary_has_one_line_per_setting_with_means():
    row = lambda d, L, t, acc, nfe: {"decoder": d, "gen_length": L, "task": t, "accuracy": acc, "nfe": nfe,  # noqa: E731
                                     "tokens_per_s": 100.0 * nfe}
    rows = [row("semi_ar", 64, "arith", 0.2, 64), row("semi_ar", 64, "sudoku4", 0.6, 64),
            row("med", 64, "arith", 0.1, 10), row("med", 64, "sudoku4", 0.3, 20), row("med", 128, "arith", 0.5, 30)]
    lines = summary_table(rows).splitlines()
    assert lines[0] == "| decoder | L | arith | sudoku4 | mean accuracy | NFE | tokens/s |" and len(lines) == 5
    assert lines[2] == "| semi_ar | 64 | 0.200 | 0.600 | 0.400 | 64.0 | 6400 |"
    assert lines[3] == "| med | 64 | 0.100 | 0.300 | 0.200 | 15.0 | 1500 |"
    assert lines[4] == "| med | 128 | 0.500 | - | 0.500 | 30.0 | 3000 |"  # a task it did not run: '-'
    assert results_markdown(rows).count("| med | 128 |") == 2  # summary and per-task table


def test_settings_defaults_are_the_papers_and_the_configs():
    settings = TemporalSettings()
    assert settings.vote_alpha == 5.0 and settings.tse_alpha == 12.8 and settings.tse_skip_ratio == 0.5
    assert settings.vote_weightings == ("fixed", "linear", "exp") and settings.tse_weighting == "exp"


def _length_answer(text: str) -> float:
    return float(len(text) % 3)


def _gold_from_question(example: dict) -> float:
    return float(sum(map(ord, str(example))) % 3)


def _task_with_length_answers(name: str, prompt_style: str = "d1"):
    """Under ddp_spawn the workers re-import every class, so a class patch would not reach them; these
    instance attributes do (the tasks are pickled with the module). Gold answers vary per example, so the
    counts differ between ranks and a missing cross-rank sync would show."""
    task = get_task(name, prompt_style=prompt_style)
    if name == "arith":
        task.parse_answer, task.gold = _length_answer, _gold_from_question
    return task


@pytest.mark.slow
def test_ddp_temporal_metrics_and_records_match_single_process(compose_cfg, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(eval_module, "get_task", _task_with_length_answers)
    single = _eval(compose_cfg, tiny_model_dir, "trainer=cpu", "run_name=single")
    ddp = _eval(compose_cfg, tiny_model_dir, "trainer=ddp_cpu", "run_name=ddp")
    temporal = [k for k in single if any(k.endswith(f"/{m}") for m in (*TEMPORAL_KEYS, "tse_correct_mean",
                                                                        "tse_wrong_mean"))]
    assert len(temporal) >= len(TASKS) * len(TEMPORAL_KEYS)
    assert 0.0 < single["eval/arith/accuracy"] < 1.0 and "eval/arith/tse_correct_mean" in single
    for key in temporal:
        assert ddp[key] == pytest.approx(single[key]), key
    assert set(temporal) == {k for k in ddp if k in single and k in temporal}
    client = mlflow.MlflowClient()
    frames = {}
    for name in ("single", "ddp"):
        _, run = _run(name=name)
        path = client.download_artifacts(run.info.run_id, "temporal/arith.parquet", str(tmp_path / name))
        frames[name] = read_records(path)
    pd.testing.assert_frame_equal(frames["single"], frames["ddp"])
