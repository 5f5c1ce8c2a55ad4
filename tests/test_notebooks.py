"""Every notebook in notebooks/ runs top to bottom against a tiny MLflow run (nbclient, no papermill).

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH), so the notebook sees the
same environment as the tests; parameters reach it through environment variables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from dllm_lab.paths import project_root
from dllm_lab.runs import run_eval

nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient, nbformat, ipykernel)")
pytest.importorskip("ipykernel")

NOTEBOOKS = project_root() / "notebooks"
KERNEL = "dllm-lab-tests"
TESTED = {"temporal_dynamics.ipynb"}  # a new notebook needs a test here


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec running ``sys.executable`` (the venv), single-threaded like the tests."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dllm-lab tests", "language": "python",
        "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _execute(path: Path, kernel: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _outputs(nb: nbformat.NotebookNode, kind: str) -> list[str]:
    return [o["data"][kind] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "data" in o and kind in o["data"]]


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == TESTED


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name}: clear outputs"


def test_temporal_dynamics_redraws_a_tiny_run_and_compares_two(compose_cfg, tiny_model_dir, kernel, tmp_path,
                                                                monkeypatch):
    import mlflow

    client = mlflow.MlflowClient()
    ids = []
    for decoder in (["decoder.steps=8"], ["decoder=med"]):
        run_eval(compose_cfg("eval", [
            *decoder, f"model.name_or_path={tiny_model_dir}", "data.num_eval=4", "data.eval_batch_size=4",
            "decoder.gen_length=16", "decoder.block_length=8", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}",
            "trainer.num_threads=1", "temporal.enabled=true", "temporal.plots=false", "print_table=false",
        ]))
        runs = client.search_runs([client.get_experiment_by_name("dllm-lab/eval").experiment_id],
                                  order_by=["attributes.start_time DESC"])
        ids.append(runs[0].info.run_id)
    monkeypatch.setenv("DLLM_LAB_RUN_ID", ids[0])  # MLFLOW_TRACKING_URI: the test's own store
    monkeypatch.setenv("DLLM_LAB_COMPARE_RUN_ID", ids[1])
    nb = _execute(NOTEBOOKS / "temporal_dynamics.ipynb", kernel, tmp_path)
    text = "\n".join(str(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
    assert f"run {ids[0]}: 8 samples" in text
    tables = _outputs(nb, "text/markdown")
    assert any("TCV exp" in t and "| arith | 16 | 4 |" in t for t in tables)
    (compared,) = [t for t in tables if "[95% CI]" in t]
    names = [client.get_run(i).info.run_name for i in ids]
    assert f"final {names[0]}" in compared and f"final {names[1]}" in compared
    assert "| arith | 16 | 4 |" in compared and "| sudoku4 | 16 | 4 |" in compared
    # timeline, TSE distribution, final vs TCV vs EverPass, and the two runs over the decode
    assert len(_outputs(nb, "image/png")) == 4
