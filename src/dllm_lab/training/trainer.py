"""``TrainerSettings``: the ``trainer`` group, typed; builds the Lightning ``Trainer`` of every run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar

from dllm_lab.errors import ConfigError
from dllm_lab.training.progress import LiveProgress

# what a multi-node launcher leaves in each process's environment: torchrun, SLURM's srun, Open MPI's mpirun
LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


@dataclass(frozen=True)
class TrainerSettings:
    """Lightning Trainer options (``configs/trainer/*.yaml``) plus two of ours.

    checkpoint_every_n_steps: the checkpoint interval (read by the checkpoint callback's config);
    num_threads: ``torch.set_num_threads`` for the run (``None`` keeps torch's default);
    activation_checkpointing: with ``strategy=fsdp``, recompute each transformer block's activations in the
    backward pass (less memory, about a third more compute).
    """

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: Any = "auto"
    precision: Any = "32-true"
    max_steps: int = 1000
    val_check_interval: Any = 200
    limit_val_batches: Any = None
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 500
    fast_dev_run: Any = False
    deterministic: Any = False
    num_threads: int | None = None
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ConfigError(f"trainer.max_steps={self.max_steps} must be positive")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"trainer.num_threads={self.num_threads} must be >= 1, or null for torch's default")

    @property
    def sharding(self) -> str | None:
        """``fsdp`` or ``deepspeed`` when the strategy shards parameters or gradients, else ``None``."""
        name = str(self.strategy).lower()
        return next((kind for kind in ("fsdp", "deepspeed") if kind in name), None)

    def check_algo(self, algo_kind: str | None) -> None:
        """Refuse a (strategy, algo) pair that cannot work, before anything is built. GRPO optimises by hand (``mu``
        updates per rollout, each clipped to ``algo.max_grad_norm``): under FSDP the clip goes through the FSDP
        root, which reduces the norm over every rank's shard (``training/sharding.py``); DeepSpeed's engine owns
        the optimizer step and clips only with its config's one value, and GRPO's manual updates under it are not
        supported here. SFT clips through ``trainer.gradient_clip_val`` under every strategy."""
        if self.sharding == "deepspeed" and algo_kind == "grpo":
            raise ConfigError(
                f"trainer.strategy={self.strategy}: GRPO's manual updates (algo.num_iterations per rollout, each "
                "clipped to algo.max_grad_norm) do not run under DeepSpeed's engine; use trainer=fsdp, or trainer=ddp "
                "with algo.lora for an 8B model, as d1 does")
        if self.activation_checkpointing and self.sharding != "fsdp":
            raise ConfigError(
                f"trainer.activation_checkpointing=true wraps the transformer blocks of FSDP (trainer=fsdp); with "
                f"trainer.strategy={self.strategy} set it to false")

    def check_machine(self, environ: Mapping[str, str] | None = None, cuda: bool | None = None) -> None:
        """What the preset needs from this machine, checked at job start (before the model loads): a CUDA device
        for a GPU preset, and a launcher's environment for more than one node."""
        environ = os.environ if environ is None else environ
        cuda = torch.cuda.is_available() if cuda is None else cuda
        if str(self.accelerator).lower() in ("gpu", "cuda") and not cuda:
            raise ConfigError(
                f"trainer.accelerator={self.accelerator}: this machine has no CUDA device (torch.cuda.is_available() "
                "is False); use trainer=cpu (one process) or trainer=ddp_cpu (two processes over gloo)")
        if self.num_nodes > 1 and not any(name in environ for name in LAUNCHER_ENV):
            raise ConfigError(
                f"trainer.num_nodes={self.num_nodes}: the processes of every node must be started by a launcher; run "
                f"`torchrun --nnodes={self.num_nodes} --nproc-per-node=<GPUs> --rdzv-backend=c10d "
                "--rdzv-endpoint=<host>:29500 -m dllm_lab.cli.train ...` on each node, or `srun` under SLURM")

    def build(
        self, logger: Any, callbacks: list, default_root_dir: str, manual_optimization: bool = False,
        model: torch.nn.Module | None = None,
    ) -> L.Trainer:
        """The Trainer, with the live progress display unless ``callbacks`` bring a progress bar. With
        ``strategy=fsdp`` and the ``model``, FSDP wraps each of its transformer blocks (and checkpoints their
        activations with ``activation_checkpointing``).
        ``manual_optimization`` (RL modules: one training step is one rollout and its updates) leaves out
        ``gradient_clip_val``, which Lightning refuses for manually optimised modules (they clip per update
        themselves), and logs every rollout, whatever ``log_every_n_steps`` and ``max_steps`` are."""
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        if not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks = [*callbacks, LiveProgress()]
        strategy = self.strategy
        if str(strategy) == "fsdp" and model is not None:
            from dllm_lab.training.sharding import build_fsdp_strategy

            strategy = build_fsdp_strategy(model, self.activation_checkpointing)
        return L.Trainer(
            accelerator=self.accelerator,
            devices=self.devices,
            num_nodes=self.num_nodes,
            strategy=strategy,
            precision=self.precision,
            max_steps=self.max_steps,
            val_check_interval=self.val_check_interval,
            check_val_every_n_epoch=None,
            limit_val_batches=self.limit_val_batches,
            gradient_clip_val=None if manual_optimization else self.gradient_clip_val,
            accumulate_grad_batches=self.accumulate_grad_batches,
            log_every_n_steps=1 if manual_optimization else self.log_every_n_steps,
            fast_dev_run=self.fast_dev_run,
            deterministic=self.deterministic,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=default_root_dir,
            use_distributed_sampler=False,  # the DataModule shards by rank itself, without padding duplicates
            enable_model_summary=False,
        )
