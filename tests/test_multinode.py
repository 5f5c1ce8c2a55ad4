"""Two "nodes" of one process each on 127.0.0.1, launched by torchrun as a cluster would launch them (gloo on CPU):
one MLflow run, disjoint rollouts per rank, identical averaged gradients and weights after every update."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from servers import free_port

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent


def test_torchrun_two_nodes_train_one_run_on_disjoint_data_with_the_same_update(tiny_model_dir, tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    record = tmp_path / "ranks"
    record.mkdir()
    port = free_port()
    overrides = [
        "experiment=rl_countdown", f"model.name_or_path={tiny_model_dir}", "trainer=cpu", "trainer.strategy=ddp",
        "trainer.devices=1", "trainer.num_nodes=2", "trainer.num_threads=1", "trainer.max_steps=2",
        "trainer.val_check_interval=100", "algo.num_iterations=1", "algo.num_generations=2", "algo.lr=1e-3",
        "algo.weight_decay=0", "data.batch_size=2", "data.num_eval=2", "data.eval_batch_size=2",
        "eval_after_fit=false", "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8",
        "run_name=two_nodes", f"paths.output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'hydra'}",
        f"+callbacks.rec={{_target_: rank_recorder.RankRecorder, out_dir: '{record}'}}",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    env.pop("MASTER_PORT", None)
    env.pop("MASTER_ADDR", None)
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
         "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "dllm_lab.cli.train", *overrides],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for rank, (node, text) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank} failed:\n{text[-4000:]}"
    for step in (1, 2):
        r0, r1 = (json.loads((record / f"rank{r}_step{step}.json").read_text()) for r in (0, 1))
        assert r0["world_size"] == r1["world_size"] == 2 and (r0["node_rank"], r1["node_rank"]) == (0, 1)
        assert set(r0["prompts"]).isdisjoint(r1["prompts"]), "the nodes roll out different prompts"
        assert r0["grads"] == r1["grads"], "gradients are averaged across the nodes before the step"
        assert r0["weights"] == r1["weights"], "so both apply the same update"
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("dllm-lab/rl_countdown").experiment_id])
    assert [r.info.run_name for r in runs] == ["two_nodes"] and runs[0].info.status == "FINISHED", "one run per job"


def test_the_slurm_script_is_valid_bash_and_its_command_composes(compose_cfg):
    """scripts/slurm_train.sh as written (SLURM itself is not run here): bash parses it, and the train command it
    runs composes and validates with the values SLURM puts in the environment."""
    import re
    import shlex

    from dllm_lab.factory import build_job
    from dllm_lab.paths import project_root
    from dllm_lab.training.trainer import LAUNCHER_ENV

    script = project_root() / "scripts" / "slurm_train.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    command = re.search(r"^srun .*?dllm_lab\.cli\.train (.*?) \"\$@\"$", text.replace("\\\n", " "), re.M | re.S)
    assert command, "the script's srun line changed; update this test"
    values = {"SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "8"}
    overrides = [re.sub(r"\$(\w+)", lambda m: values[m.group(1)], word)
                 for word in shlex.split(command.group(1).replace('"', ""))]
    assert overrides == ["trainer=ddp", "trainer.num_nodes=2", "trainer.devices=8"]
    job = build_job(compose_cfg("train", [*overrides, "experiment=rl_countdown", "logger=none"]), "train")
    assert (job.trainer.num_nodes, job.trainer.devices, job.trainer.strategy) == (2, 8, "ddp")
    assert "SLURM_NTASKS" in LAUNCHER_ENV, "SLURM's processes pass the several-nodes check"
