"""Study dashboards (``dllm-report``): runs selected from an MLflow store, settings and seeds pooled, changes against
the baseline with paired 95% intervals, one self-contained HTML page logged beside the runs.

Most tests log small studies straight through the MLflow client, in the layout evaluation runs write (metrics
``eval/<task>/...``, tag ``preset.decoder``, ``predictions/<task>.jsonl``), so every number is known; one test
builds the dashboard of a real (tiny) decoder sweep and checks it against the sweep's own table."""

from __future__ import annotations

import json
import statistics

import mlflow
import pytest

from dllm_lab.cli.report import main as report_main
from dllm_lab.evaluation.dashboard import (
    DASHBOARD_FILE,
    DASHBOARD_TAG,
    NoRunsMatched,
    build_dashboard,
    dashboard_run,
    ledger_runs,
    study_dashboard,
)
from dllm_lab.runs import run_eval


def _log_run(client, experiment_id, name, correct, *, decoder="semi_ar", seed=0, nfe=64.0, parent=None,
             trained=False, params=None, tags=None, status="FINISHED", tmp_path=None):
    """One finished run in the evaluation layout: ``correct`` is task -> list of 0/1 (sample_id = index)."""
    run_tags = {"preset.decoder": decoder, **(tags or {})}
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=name, tags=run_tags)
    rid = run.info.run_id
    for key, value in {"seed": seed, "decoder.gen_length": 64, **(params or {})}.items():
        client.log_param(rid, key, value)
    for task, values in correct.items():
        client.log_metric(rid, f"eval/{task}/accuracy", sum(values) / len(values))
        client.log_metric(rid, f"eval/{task}/nfe", nfe)
        folder = tmp_path / rid / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{task}.jsonl").write_text("".join(json.dumps({"sample_id": i, "correct": c}) + "\n"
                                                      for i, c in enumerate(values)))
        client.log_artifact(rid, str(folder / f"{task}.jsonl"), "predictions")
    if trained:
        client.log_metric(rid, "train/loss", 1.0)
    client.set_terminated(rid, status)
    return rid


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/study.db"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("dllm-lab/study", artifact_location=(tmp_path / "art").as_uri())
    return uri, client, experiment_id


def _sweep(store, tmp_path):
    """A parent run with three decoder settings on two tasks (40 problems each) and known per-problem results."""
    uri, client, eid = store
    parent = client.create_run(eid, run_name="decoding_ablation").info.run_id
    client.log_param(parent, "sweep.baseline", "semi_ar")
    base = [1] * 20 + [0] * 20
    better = [1] * 30 + [0] * 10   # +0.25 on the same problems: 10 wrong -> right, none right -> wrong
    same = [0, 1] * 10 + [1, 0] * 10  # 0.5 as well, but on other problems: the change is 0
    _log_run(client, eid, "semi_ar L64", {"arith": base, "sudoku4": base}, parent=parent, tmp_path=tmp_path)
    _log_run(client, eid, "med L64", {"arith": better, "sudoku4": same}, decoder="med", nfe=14.0, parent=parent,
             tmp_path=tmp_path)
    _log_run(client, eid, "<b>odd</b> L64", {"arith": same, "sudoku4": base}, decoder="eoser", parent=parent,
             tmp_path=tmp_path)
    client.set_terminated(parent)
    return parent


def test_a_sweep_is_paired_against_its_own_baseline_problem_by_problem(store, tmp_path):
    uri, _, _ = store
    parent = _sweep(store, tmp_path)
    page = build_dashboard(uri, parent=parent)
    assert page.baseline == "semi_ar L64", "the sweep's sweep.baseline param picks it"
    rows = {(r["setting"], r["set"]): r for r in page.rows}
    assert set(rows) == {(s, t) for s in ("semi_ar L64", "med L64", "eoser L64") for t in ("arith", "sudoku4")}
    med = rows["med L64", "arith"]
    assert med["accuracy"] == pytest.approx(0.75) and med["nfe"] == 14.0
    assert med["delta"] == pytest.approx(0.25) and med["low"] <= 0.25 <= med["high"] and med["resolved"]
    assert med["problems"] == 40 and med["base_accuracy"] == pytest.approx(0.5)
    tie = rows["med L64", "sudoku4"]
    assert tie["delta"] == pytest.approx(0.0) and tie["low"] < 0 < tie["high"] and not tie["resolved"]
    assert "delta" not in rows["semi_ar L64", "arith"], "the baseline is not compared with itself"
    table = page.table()
    assert "+0.250 [" in table and "(not resolved)" in table and "baseline" in table


def test_the_page_is_self_contained_escaped_and_has_every_figure(store, tmp_path):
    uri, _, _ = store
    page = build_dashboard(uri, parent=_sweep(store, tmp_path))
    text = page.html()
    assert text.count("* plotly.js v") == 1, "plotly's library inline once, no CDN"
    assert 'src="https://cdn.plot.ly' not in text
    assert "<b>odd</b>" not in text and "&lt;b&gt;odd&lt;/b&gt;" in text, "run names are escaped"
    for title in ("Accuracy against NFE, coloured by decoder preset", "Change against semi_ar L64"):
        assert title in text
    figures = page.figures()
    nfe = figures["Accuracy against NFE, coloured by decoder preset"]
    colours = {t.name: t.marker.color for t in nfe.data if not t.name.startswith("set: ")}
    assert set(colours) == {"semi_ar", "med", "eoser"} and len(set(colours.values())) == 3, "one colour per preset"
    written = page.write(tmp_path / "out")
    assert {p.name for p in written} == {DASHBOARD_FILE, "dashboard.md", "dashboard_accuracy_vs_nfe.png",
                                         "dashboard_vs_baseline.png"}
    assert all(p.stat().st_size > 0 for p in written)


def test_seeds_of_a_training_arm_pool_into_one_setting_shown_before_and_after(store, tmp_path):
    uri, client, eid = store
    base = [1] * 10 + [0] * 30
    _log_run(client, eid, "rl_base", {"countdown": base}, seed=0, tags={"study": "rl"}, tmp_path=tmp_path)
    for seed, extra in ((0, 6), (1, 10), (2, 8)):
        _log_run(client, eid, f"rl_countdown seed={seed}", {"countdown": [1] * (10 + extra) + [0] * (30 - extra)},
                 seed=seed, trained=True, tags={"study": "rl"}, tmp_path=tmp_path)
    _log_run(client, eid, "rl_countdown seed=3", {"countdown": [1] * 40}, seed=3, trained=True,
             tags={"study": "rl"}, status="FAILED", tmp_path=tmp_path)
    page = build_dashboard(uri, filter_string="tags.study = 'rl'")
    assert page.baseline == "rl_base", "the one evaluated-only setting of a training study"
    (arm,) = [r for r in page.rows if r["setting"] == "rl_countdown"]
    assert arm["seeds"] == [0, 1, 2], "a failed run is not part of the study"
    assert arm["accuracy"] == pytest.approx(statistics.mean([16 / 40, 20 / 40, 18 / 40]))
    assert arm["delta"] == pytest.approx(8 / 40) and arm["low"] <= arm["delta"] <= arm["high"]
    line = next(line for line in page.table().splitlines() if line.startswith("| rl_countdown"))
    assert "0.450 ± 0.050" in line and "0.250 -> 0.450, +0.200 [" in line
    assert "Before -&gt; after against rl_base" in page.html()


def test_a_rerun_seed_counts_once_with_its_newest_run(store, tmp_path):
    uri, client, eid = store
    _log_run(client, eid, "base", {"arith": [0] * 10}, tmp_path=tmp_path)
    _log_run(client, eid, "arm seed=0", {"arith": [0] * 10}, trained=True, tmp_path=tmp_path)
    _log_run(client, eid, "arm seed=0", {"arith": [1] * 10}, trained=True, tmp_path=tmp_path)
    (arm,) = [r for r in build_dashboard(uri, experiments=["dllm-lab/study"]).rows if r["setting"] == "arm"]
    assert arm["runs"] == 1 and arm["accuracy"] == 1.0


def test_a_selection_without_runs_or_with_an_unknown_baseline_says_so(store, tmp_path):
    uri, client, eid = store
    with pytest.raises(NoRunsMatched, match="say which runs"):
        build_dashboard(uri)
    with pytest.raises(NoRunsMatched, match="no experiment named 'dllm-lab/nope'.*it has: Default, dllm-lab/study"):
        build_dashboard(uri, experiments=["dllm-lab/nope"])
    with pytest.raises(NoRunsMatched, match="no finished run matches filter"):
        build_dashboard(uri, filter_string="tags.study = 'nope'")
    with pytest.raises(NoRunsMatched, match="no run 'deadbeef'"):
        build_dashboard(uri, parent="deadbeef")
    parent = _sweep(store, tmp_path)
    with pytest.raises(NoRunsMatched, match="baseline 'greedy' is none of the settings"):
        build_dashboard(uri, parent=parent, baseline="greedy")


def test_dllm_report_writes_logs_and_exits_non_zero_on_an_empty_selection(store, tmp_path, capsys):
    uri, client, _ = store
    parent = _sweep(store, tmp_path)
    out = tmp_path / "report"
    report_main(["--tracking-uri", uri, "--parent", parent, "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| med L64 | arith | med |" in printed and f"logged to run {parent}" in printed
    assert (out / DASHBOARD_FILE).read_text().startswith("<!doctype html>")
    assert DASHBOARD_FILE in {a.path for a in client.list_artifacts(parent)}, "beside the runs, on the parent"
    with pytest.raises(SystemExit) as exit_:
        report_main(["--tracking-uri", uri, "--filter", "tags.study = 'nope'", "--no-log"])
    assert exit_.value.code != 0 and "no finished run matches" in str(exit_.value.code)


def test_a_study_without_a_parent_keeps_one_dashboard_run_that_no_study_counts(store, tmp_path):
    uri, client, eid = store
    _log_run(client, eid, "base", {"arith": [0, 1] * 5}, tags={"study": "s"}, tmp_path=tmp_path)
    _log_run(client, eid, "arm", {"arith": [1] * 10}, trained=True, tags={"study": "s"}, tmp_path=tmp_path)
    first = study_dashboard(uri, tmp_path / "a", "s", filter_string="tags.study = 's'")
    second = study_dashboard(uri, tmp_path / "b", "s", filter_string="tags.study = 's'")
    assert first is not None and second is not None and len(second.runs) == 2, "the dashboard run is no setting"
    holders = client.search_runs([eid], f"tags.`{DASHBOARD_TAG}` = 'true'")
    assert len(holders) == 1 and holders[0].info.run_id == dashboard_run(uri, "dllm-lab/study", "s")
    assert DASHBOARD_FILE in {a.path for a in client.list_artifacts(holders[0].info.run_id)}


def test_a_study_whose_dashboard_cannot_be_built_warns_and_keeps_its_results(store, tmp_path, caplog):
    uri, _, _ = store
    assert study_dashboard(uri, tmp_path, "empty", filter_string="tags.study = 'none'") is None
    assert "the empty dashboard was not built" in caplog.text and "dllm-report" in caplog.text


def test_a_real_sweep_logs_a_dashboard_that_matches_its_own_table(compose_cfg, tmp_path):
    out = tmp_path / "sweep"
    cfg = compose_cfg("eval", [
        "experiment=decoding_ablation", f"sweep.output_dir={out}", "data.num_eval=8", "data.eval_batch_size=8",
        "temporal.enabled=false", "sweep.decoders=[semi_ar,threshold]", "sweep.gen_lengths=[32]",
        "~sweep.decoders_at", "data.eval_tasks={arith: synthetic}"])
    rows = run_eval(cfg)["rows"]
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("dllm-lab/decoding_ablation").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 3, "the parent and a child per setting"
    assert DASHBOARD_FILE in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert (out / DASHBOARD_FILE).exists()
    page = build_dashboard(mlflow.get_tracking_uri(), parent=parent.info.run_id)
    got = {r["decoder"]: r for r in page.rows}
    for row in rows:
        assert got[row["decoder"]]["accuracy"] == pytest.approx(row["accuracy"])
        assert got[row["decoder"]]["nfe"] == pytest.approx(row["nfe"])
    assert got["threshold"]["delta"] == pytest.approx(rows[1]["delta"])


def test_a_study_ledger_pools_with_the_store_and_builds_the_page_on_its_own(store, tmp_path):
    uri, client, eid = store
    found = {"rl_base": {0: {"correct": {"countdown": {i: float(i < 10) for i in range(40)}}, "run_id": "old-base"}},
             "rl_countdown": {s: {"correct": {"countdown": {i: float(i < 10 + 2 * s) for i in range(40)}},
                                  "run_id": f"old-{s}"} for s in (0, 1)}}
    ledger = ledger_runs(found, "rl_base")
    assert [(r.setting, r.seed, r.trained) for r in ledger] == [("rl_base", 0, False), ("rl_countdown", 0, True),
                                                               ("rl_countdown", 1, True)]
    page = build_dashboard(uri, filter_string="tags.study = 'rl'", ledger=ledger, title="rl")
    (arm,) = [r for r in page.rows if r["setting"] == "rl_countdown"]
    assert arm["seeds"] == [0, 1] and arm["delta"] == pytest.approx(0.025) and page.baseline == "rl_base"
    assert "Accuracy against NFE" not in page.html(), "a ledger has no NFE to draw"
    assert [p.name for p in page.write(tmp_path / "ledger")] == [DASHBOARD_FILE, "dashboard.md",
                                                                 "dashboard_vs_baseline.png"]
    # seed 1 rerun into this store: the store's run replaces the ledger's, seed 0 stays from the ledger
    _log_run(client, eid, "rl_countdown seed=1", {"countdown": [1.0] * 40}, seed=1, trained=True,
             tags={"study": "rl"}, tmp_path=tmp_path)
    (arm,) = [r for r in build_dashboard(uri, filter_string="tags.study = 'rl'", ledger=ledger).rows
              if r["setting"] == "rl_countdown"]
    assert arm["runs"] == 2 and arm["accuracy"] == pytest.approx((10 / 40 + 1.0) / 2)
    with pytest.raises(NoRunsMatched, match="no run 'x'"):
        build_dashboard(uri, parent="x", ledger=ledger)
