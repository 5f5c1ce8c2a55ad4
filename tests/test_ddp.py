"""DDP on two CPU processes (gloo): one MLflow run per job, exact metrics, no duplicated samples."""

from __future__ import annotations

import json

import mlflow
import pytest

from dllm_lab.runs import run_eval, run_train

pytestmark = pytest.mark.slow

EVAL = ["data.num_eval=5", "data.eval_batch_size=2", "decoder.gen_length=16", "decoder.block_length=8",
        "decoder.steps=8", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}"]


def _predictions(client, run_id: str, task: str, tmp_path) -> list[dict]:
    path = client.download_artifacts(run_id, f"predictions/{task}.jsonl", str(tmp_path))
    with open(path) as fh:
        return sorted((json.loads(line) for line in fh), key=lambda r: r["prompt"])


def test_ddp_eval_matches_single_process(compose_cfg, tiny_model_dir, tmp_path):
    model = [f"model.name_or_path={tiny_model_dir}"]
    single = run_eval(compose_cfg("eval", [*model, *EVAL, "trainer=cpu", "run_name=single"]))
    ddp = run_eval(compose_cfg("eval", [*model, *EVAL, "trainer=ddp_cpu", "run_name=ddp"]))
    for task in ("arith", "sudoku4"):
        assert ddp[f"eval/{task}/samples"] == single[f"eval/{task}/samples"] == 5  # striding, no padding dupes
        for metric in ("accuracy", "parse_rate", "nfe"):
            assert ddp[f"eval/{task}/{metric}"] == pytest.approx(single[f"eval/{task}/{metric}"])

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("dllm-lab/eval")
    runs = {r.info.run_name: r for r in client.search_runs(experiment.experiment_id)}
    assert set(runs) == {"single", "ddp"}, "DDP must create exactly one run"
    for task in ("arith", "sudoku4"):
        a = _predictions(client, runs["single"].info.run_id, task, tmp_path / "a")
        b = _predictions(client, runs["ddp"].info.run_id, task, tmp_path / "b")
        assert len(a) == len(b) == 5
        assert [(r["prompt"], r["output"]) for r in a] == [(r["prompt"], r["output"]) for r in b]


def test_ddp_training_logs_one_run_with_both_ranks_stepping(compose_cfg):
    cfg = compose_cfg("train", [
        "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
        "model.init.intermediate_size=64", "model.init.corpus_examples=50", "trainer=ddp_cpu",
        "trainer.max_steps=3", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
        "data.batch_size=4", "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0",
        "eval_after_fit=false",
    ])
    metrics = run_train(cfg)
    assert metrics["train/loss"] > 0
    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name("dllm-lab/train").experiment_id)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["strategy"] == "ddp_spawn" and run.data.tags["devices"] == "2"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted({m.step for m in history}) == [0, 1, 2]


def test_a_sweep_under_script_relaunching_ddp_runs_each_job_once_with_its_own_process_group(tmp_path):
    """`dllm-eval -m ... trainer.strategy=ddp`: Lightning relaunches the script for rank 1; each job must start its
    own rank 1 with its own overrides (not the whole sweep), and the second job must get a fresh process group."""
    import os
    import subprocess
    import sys

    from dllm_lab.paths import project_root

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("MASTER_PORT", "MASTER_ADDR", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "dllm_lab.cli.eval", "-m", "data.num_eval=4", "data.eval_batch_size=2",
               "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8,16",
               "data.eval_tasks={arith: synthetic}", "trainer=cpu", "trainer.strategy=ddp", "trainer.devices=2",
               "trainer.num_threads=1", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(command, cwd=project_root(), env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]

    for job in ("0", "1"):
        rank1 = sweep / job / "eval_rank1.log"
        assert rank1.exists(), f"job {job} started no rank 1 of its own"
        predictions = (sweep / job / "predictions" / "arith.jsonl").read_text().splitlines()
        assert len(predictions) == 4  # both ranks' halves, gathered once
    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name("dllm-lab/eval").experiment_id)
    assert len(runs) == 2, "one MLflow run per job, none from a rank running the sweep again"
    assert sorted(int(r.data.params["decoder.steps"]) for r in runs) == [8, 16]
    assert all(r.data.metrics["eval/arith/samples"] == 4 for r in runs)
