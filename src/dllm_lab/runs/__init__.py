"""Run bodies of the entry points, callable from tests and notebooks: ``run_train(cfg)``, ``run_eval(cfg)``,
``export_checkpoint(ckpt, out)``. Each hands the config to :func:`dllm_lab.factory.build_job` first and
then works with typed objects only; they sit above the factory so that it can build every package's objects."""

from dllm_lab.runs.eval import run_eval
from dllm_lab.runs.export import export_checkpoint
from dllm_lab.runs.train import run_train

__all__ = ["export_checkpoint", "run_eval", "run_train"]
