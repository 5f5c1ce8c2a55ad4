"""MLflow tracking: metric names, config flattening, store URIs, a real server and the local sqlite store."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from dllm_lab.tracking import flatten, make_mlflow_logger, safe_metric_name
from servers import free_port, start_until_healthy, stop_server

# A tiny model, a few steps and a few short decodes: the whole train + eval run takes seconds on a CPU.
TINY_TRAIN = [
    "model=tiny_scratch",
    "model.init.hidden_size=32",
    "model.init.num_layers=1",
    "model.init.num_heads=1",
    "model.init.intermediate_size=64",
    "model.init.corpus_examples=50",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=3",
    "trainer.num_threads=1",
    "data.batch_size=4",
    "data.num_val_batches=1",
    "data.num_eval=4",
    "data.eval_batch_size=4",
    "data.min_response_length=0",
    "data.long_response_prob=0.0",
    "decoder.gen_length=16",
    "decoder.block_length=8",
    "decoder.steps=8",
    "eval_after_fit=true",
]
TINY_EVAL = [
    "data.num_eval=2",
    "data.eval_batch_size=2",
    "decoder.gen_length=8",
    "decoder.block_length=8",
    "decoder.steps=4",
    "trainer.num_threads=1",
    "print_table=false",
]
PREDICTION_FIELDS = {"prompt", "output", "parsed", "correct", "nfe"}


# ---------------------------------------------------------------- names and params


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pass@1", "pass_at_1"),
        ("eval/gsm8k/pass@10", "eval/gsm8k/pass_at_10"),
        ("eval/arith/accuracy", "eval/arith/accuracy"),
        ("val/loss-ema.v2", "val/loss-ema.v2"),
        ("acc(%)", "acc___"),
        ("tokens/s:mean", "tokens/s_mean"),
        ("résumé", "r_sum_"),
    ],
)
def test_safe_metric_name(name, expected):
    assert safe_metric_name(name) == expected


def test_safe_metric_name_output_is_in_the_allowed_alphabet():
    import re

    out = safe_metric_name("a b@c#d$e%f^g&h*i(j)k[l]m{n}o|p\\q'r\"s;t:u<v>w?x,y~z`é")
    assert re.fullmatch(r"[A-Za-z0-9_/.-]+", out), out


def test_flatten_nested_dicts():
    nested = {
        "model": {"init": {"hidden_size": 32, "num_layers": 1}, "name_or_path": None},
        "trainer": {"max_steps": 3},
        "data": {"tasks": ["arith", "countdown"]},
        "seed": 0,
        "tags": {},
    }
    assert flatten(nested) == {
        "model.init.hidden_size": 32,
        "model.init.num_layers": 1,
        "model.name_or_path": None,
        "trainer.max_steps": 3,
        "data.tasks": ["arith", "countdown"],
        "seed": 0,
    }
    assert flatten({"a": {"b": 1}}, prefix="cfg.") == {"cfg.a.b": 1}


# ---------------------------------------------------------------- store URIs


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "./mlruns", "mlruns", "/tmp/somewhere/mlruns"])
def test_file_store_is_refused(uri, tmp_path):
    with pytest.raises(ValueError) as info:
        make_mlflow_logger(uri, "dllm-lab/test", None, root=tmp_path)
    message = str(info.value)
    assert "logger.tracking_uri" in message
    assert "sqlite:///" in message and "http://" in message
    assert not (tmp_path / "mlruns").exists()


# ---------------------------------------------------------------- a real MLflow server


@pytest.fixture
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a sqlite backend and proxied artifacts; yields its URL."""
    base = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts")]
    proc = start_until_healthy(cmd, base, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.mark.slow
@pytest.mark.server
def test_train_run_is_logged_to_a_server(mlflow_server, compose_cfg, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from dllm_lab.runs import run_train

    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("train", [*TINY_TRAIN, f"logger.tracking_uri={mlflow_server}"])
    eval_tasks = list(cfg.data.eval_tasks or cfg.data.tasks)  # null: every training task
    metrics = run_train(cfg)
    assert all(f"eval/{t}/accuracy" in metrics for t in eval_tasks)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("dllm-lab/train")
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"

    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 3
    assert sorted({m.step for m in history}) == sorted(m.step for m in history)  # one value per step
    assert "val/loss" in run.data.metrics
    for task in eval_tasks:
        assert 0.0 <= run.data.metrics[f"eval/{task}/accuracy"] <= 1.0
        assert run.data.metrics[f"eval/{task}/samples"] == 4

    params = run.data.params
    assert params["model.init.hidden_size"] == "32"
    assert params["trainer.max_steps"] == "3"
    assert params["logger.tracking_uri"] == mlflow_server
    assert params["model.name_or_path"] == "null"
    tags = run.data.tags
    assert tags["git_commit"]
    assert tags["strategy"] == "auto"
    assert tags["model_family"] == "auto"
    assert tags["mlflow.runName"].startswith("train model=tiny_scratch model.init.hidden_size=32")
    assert "logger." not in tags["mlflow.runName"]  # where a run logs does not name it
    assert tags["preset.model"] == "tiny_scratch" and tags["study"] == "train"
    assert "trainer.max_steps=3" in tags["overrides"] and tags["git_dirty"] in ("true", "false")

    root = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert {"config.yaml", "results.md", "results.json", "predictions"} <= set(root)
    predictions = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    assert predictions == {f"predictions/{t}.jsonl" for t in eval_tasks}

    out = tmp_path / "download"
    config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", str(out))).read_text())
    assert config["trainer"]["max_steps"] == 3
    assert config["model"]["init"]["hidden_size"] == 32
    assert "| task |" in Path(client.download_artifacts(run.info.run_id, "results.md", str(out))).read_text()
    results = json.loads(Path(client.download_artifacts(run.info.run_id, "results.json", str(out))).read_text())
    assert sorted(row[0] for row in results["data"]) == sorted(eval_tasks)
    for task in eval_tasks:
        path = Path(client.download_artifacts(run.info.run_id, f"predictions/{task}.jsonl", str(out)))
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert len(rows) == 4
        for row in rows:
            assert set(row) >= PREDICTION_FIELDS
            assert row["task"] == task and isinstance(row["correct"], bool) and row["nfe"] > 0

    assert not (tmp_path / "mlruns").exists()


# ---------------------------------------------------------------- the default local store


def test_eval_logs_to_the_local_sqlite_store(compose_cfg, tiny_model_dir, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from dllm_lab.runs import run_eval

    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("eval", [*TINY_EVAL, f"model.name_or_path={tiny_model_dir}"])
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.logger.tracking_uri == store  # the conftest's per-test store, via MLFLOW_TRACKING_URI
    metrics = run_eval(cfg)
    eval_tasks = list(cfg.data.eval_tasks or cfg.data.tasks)  # null: every training task
    assert all(f"eval/{t}/accuracy" in metrics for t in eval_tasks)

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("dllm-lab/eval")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    for task in eval_tasks:
        assert f"eval/{task}/accuracy" in run.data.metrics
    assert run.data.params["model.name_or_path"] == str(tiny_model_dir)

    artifacts = tmp_path / "mlartifacts" / run.info.run_id / "artifacts"
    assert (artifacts / "config.yaml").is_file() and (artifacts / "results.md").is_file()
    assert (artifacts / "results.json").is_file()
    for task in eval_tasks:
        rows = [json.loads(line) for line in (artifacts / "predictions" / f"{task}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(set(row) >= PREDICTION_FIELDS for row in rows)
    assert not (tmp_path / "mlruns").exists()


def test_logger_none_creates_no_run(compose_cfg, tiny_model_dir, tmp_path, monkeypatch):
    import mlflow

    from dllm_lab.factory import build_job
    from dllm_lab.runs import run_eval

    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("eval", [*TINY_EVAL, f"model.name_or_path={tiny_model_dir}", "logger=none"])
    assert cfg.logger.tracking_uri is None
    assert build_job(cfg, "eval").make_logger() is None
    metrics = run_eval(cfg)
    assert all(f"eval/{t}/accuracy" in metrics for t in cfg.data.tasks)
    assert mlflow.active_run() is None
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "mlruns").exists()
