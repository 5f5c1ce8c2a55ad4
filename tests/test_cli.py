"""The console entry points, run in-process: each only parses its arguments and calls a run body."""

from __future__ import annotations

import re
import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

TINY_SCRATCH = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "data.batch_size=4", "data.num_eval=2",
    "data.eval_batch_size=2", "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0",
    "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "trainer.num_threads=1", "logger=none",
]


def _hydra_main(module, argv: list[str], monkeypatch) -> None:
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", argv)
    try:
        module.main()
    finally:
        GlobalHydra.instance().clear()


def test_dllm_train_then_export_then_dllm_eval(tmp_path, monkeypatch, capsys):
    from dllm_lab.cli import eval as eval_cli
    from dllm_lab.cli import export as export_cli
    from dllm_lab.cli import train as train_cli

    run_dir = tmp_path / "train"
    _hydra_main(train_cli, ["dllm-train", *TINY_SCRATCH, "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2",
                            "trainer.val_check_interval=2", "eval_after_fit=false", f"hydra.run.dir={run_dir}"],
                monkeypatch)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    monkeypatch.setattr(sys, "argv", ["export", str(ckpt), str(tmp_path / "model")])
    export_cli.main()
    assert str(tmp_path / "model") in capsys.readouterr().out
    _hydra_main(eval_cli, ["dllm-eval", f"model.name_or_path={tmp_path / 'model'}", *TINY_SCRATCH[6:],
                           "data.eval_tasks={arith: synthetic}", f"hydra.run.dir={tmp_path / 'eval'}"], monkeypatch)
    out = capsys.readouterr().out
    assert re.search(r"\| arith +\| +2 \|", out), out  # the table, padded to column width
    assert f"model {tmp_path / 'model'} · decoder semi_ar (L=16, 8 steps, block 8)" in out, out


def test_rl_report_names_the_command_when_no_study_ran(tmp_path, monkeypatch):
    from dllm_lab.cli import rl_report

    monkeypatch.setattr(sys, "argv", ["rl_report", "--tracking-uri", f"sqlite:///{tmp_path}/empty.db",
                                      "--out", str(tmp_path / "out")])
    with pytest.raises(RuntimeError, match="make rl-study"):
        rl_report.main()


def test_tables_name_the_model_they_decoded():
    from types import SimpleNamespace

    from dllm_lab.decoding import DecodeConfig
    from dllm_lab.runs.eval import describe

    cfg = DecodeConfig(gen_length=16, block_length=8, steps=8)
    evaluated = SimpleNamespace(stage="eval", identity=None, config={"model": {"name_or_path": "ckpt/a"}})
    assert describe(evaluated, cfg, "semi_ar").startswith("model ckpt/a · decoder semi_ar")
    # after fit, the table is the trained weights': named by where they are exported, and where they started
    trained = SimpleNamespace(stage="train", identity=None,
                              config={"model": {"name_or_path": "ckpt/a"}, "export_dir": "ckpt/b"})
    assert describe(trained, cfg, "semi_ar").startswith("model ckpt/b (trained from ckpt/a) · decoder semi_ar")
