"""``GRPOModule``: the GRPO family (d1's diffu-GRPO, the one-step baseline, CJ-GRPO) with task and TCR
rewards, as one LightningModule that only wires the pieces of :mod:`dllm_lab.rl`.

One training step = one rollout batch (docs/methods.md, "GRPO family"), read top to bottom in
:meth:`GRPOModule.training_step`:

1. rollout -> rewards -> advantages: :func:`dllm_lab.rl.rollout` (decode ``G`` completions per prompt,
   score them with the registered rewards, group advantages);
2. old and reference log-probs, once per rollout (once per inner iteration for ``one_step``);
3. ``mu`` (``num_iterations``) clipped policy updates, each an optimizer step (so ``trainer.max_steps``
   counts updates, ``mu`` per rollout);
4. logs: reward mean/std per reward, accuracy, TSE, KL, clip ratio, lengths, NFE, times.

Overrides of a plain LightningModule: optimisation is manual (``mu`` steps per batch, gradient clipping
per update with ``max_grad_norm``); under DDP Lightning re-arms the gradient reducer before every
``manual_backward``, so each update averages gradients across ranks.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.decoding import DecodeConfig
from dllm_lab.extensions import import_extensions
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.rl import GRPOSettings, Rollout, policy_loss, rollout
from dllm_lab.temporal import TemporalSettings
from dllm_lab.training.optim import OptimSettings, build_optimizer
from dllm_lab.training.progress import decode_progress
from dllm_lab.training.sharding import clip_grad_norm, shard_reference
from dllm_lab.training.validation import TaskCache, log_greedy_accuracy

# A checkpoint after training_step holds the state after all mu updates of the rollout, which is what resuming
# needs (tested); Lightning's advice to save the pre-update state does not apply.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


class GRPOModule(L.LightningModule):
    """GRPO-family RL fine-tuning of a :class:`DiffusionLM`.

    Args:
        lm: the policy (full fine-tuning, or LoRA when ``settings.lora`` is given).
        settings: the ``algo`` block (estimator, rewards, ``G``, ``mu``, clip, KL, LoRA ...).
        decoder: the rollout decoder (``settings.temperature`` replaces its temperature).
        eval_decoder: greedy decoder of validation (accuracy on held-out problems); default: ``decoder`` at T=0.
        optim: AdamW and its schedule.
        temporal: TSE settings of the ``tcr`` reward.
        seed: the run's seed (rollout noise and prompt masks derive from it, per rollout and rank).
        run_config: the resolved run config (plain containers), saved in every checkpoint.
    """

    def __init__(
        self,
        lm: DiffusionLM,
        settings: GRPOSettings,
        decoder: DecodeConfig,
        eval_decoder: DecodeConfig | None = None,
        optim: OptimSettings | None = None,
        temporal: TemporalSettings | None = None,
        seed: int = 0,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"seed": seed, "run_config": run_config}, logger=False)
        self.automatic_optimization = False
        self.settings, self.decoder, self.seed = settings, decoder, seed
        self.eval_decoder = eval_decoder or dataclasses.replace(decoder, temperature=0.0, seed=None)
        self.optim = optim or OptimSettings(lr=1e-5, weight_decay=0.0, betas=(0.9, 0.99), warmup_steps=0,
                                            min_lr_ratio=1.0, decay_norms_and_biases=True)
        self.temporal = temporal or TemporalSettings()
        self.estimator = settings.make_estimator()
        self.lm = lm
        self._frozen_ref: list[DiffusionLM] = []  # a list, so the copy is not a registered submodule
        if settings.lora:
            from peft import LoraConfig, get_peft_model

            lora = settings.lora
            target = lora.get("target_modules", "all-linear")
            lm.model = get_peft_model(lm.model, LoraConfig(
                r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                lora_dropout=float(lora.get("dropout", 0.0)),
                target_modules=target if isinstance(target, str) else list(target),
            ))
        elif settings.beta > 0:
            self._frozen_ref.append(copy.deepcopy(lm).eval().requires_grad_(False))
        self.train()
        self.tasks = TaskCache(lm)
        self.last_rollout: Rollout | None = None  # for callbacks and notebooks

    @property
    def optimizer_steps_per_batch(self) -> int:
        """Updates per rollout batch (the DataModule's resume position divides by it)."""
        return self.settings.num_iterations

    # -- setup -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return build_optimizer(self.lm.named_parameters(), self.optim)

    def setup(self, stage: str) -> None:
        # rewards are looked up by name: a process that ddp_spawn started has not imported the user's modules yet
        import_extensions((self.hparams.get("run_config") or {}).get("imports"))

    def on_fit_start(self) -> None:
        for ref in self._frozen_ref:
            ref.to(self.device)
            ref.model = shard_reference(ref.model, self.trainer.strategy)  # FSDP: sharded like the policy

    @contextlib.contextmanager
    def _reference(self) -> Iterator[DiffusionLM]:
        """The reference policy: the base without the LoRA adapter, or the frozen copy."""
        if self.settings.lora:
            with self.lm.model.disable_adapter():
                yield self.lm
        else:
            yield self._frozen_ref[0]

    def _rollout_seed(self) -> int:
        """Distinct per rollout and rank, reproducible across runs and resumes."""
        rollout_index = self.global_step // self.optimizer_steps_per_batch
        world = self.trainer.world_size if self._trainer is not None else 1  # no trainer: notebooks, benchmarks
        return int(self.seed) * 1_000_003 + rollout_index * world + self.global_rank

    def rollout(self, batch: dict[str, Any]) -> Rollout:
        """Decode ``G`` completions per prompt, score them, and compute group advantages."""
        ro = rollout(self.lm, batch, self.decoder, self.settings, self.tasks, self._rollout_seed(), self.temporal,
                     decode_progress(self))
        self.lm.train()
        return ro

    # -- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        s, estimator = self.settings, self.estimator
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        # 1. rollout -> rewards -> advantages
        ro = self.last_rollout = self.rollout(batch)
        start = time.perf_counter()
        logged, informative = ro, ro.informative_rows(s.num_generations)
        if s.drop_uniform_groups and 0 < len(informative) < len(ro.texts):
            ro = ro.select(informative)
        mu = s.num_iterations
        inputs = range(mu if estimator.varies_per_iteration else 1)  # one input per iteration, or one for all
        # 2. old and reference log-probs, without gradients
        with torch.no_grad():
            old = None
            if mu > 1:
                self.lm.eval()
                old = [estimator.logps(self.lm, ro, i)[0] for i in inputs]
                self.lm.train()
            ref = None
            if s.beta > 0:
                with self._reference() as ref_lm:
                    ref = [estimator.logps(ref_lm, ro, i)[0] for i in inputs]
        # 3. mu clipped updates
        stats: dict[str, float] = {}
        losses = []
        for i in range(mu):
            logp, mask = estimator.logps(self.lm, ro, i)
            j = i if estimator.varies_per_iteration else 0
            old_logp = logp.detach() if old is None else old[j]
            loss, parts = policy_loss(logp, old_logp, None if ref is None else ref[j], ro.advantages, mask,
                                      s.eps, s.beta)
            if not torch.isfinite(loss):
                clip = (f"clipping is on: algo.max_grad_norm={s.max_grad_norm}" if s.max_grad_norm else
                        "or set algo.max_grad_norm=0.2")
                raise FloatingPointError(f"non-finite GRPO loss at step {self.global_step}; lower algo.lr or "
                                         f"algo.beta ({clip})")
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if s.max_grad_norm:
                clip_grad_norm(self, optimizer, s.max_grad_norm)  # over every rank's shard under FSDP
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
            for k, v in parts.items():
                stats[k] = stats.get(k, 0.0) + float(v) / mu
        # 4. logs
        stats["informative_groups"] = len(informative) / s.num_generations
        self._log_rollout(logged, stats, torch.stack(losses).mean(), time.perf_counter() - start)
        return torch.stack(losses).mean()

    def _log_rollout(self, ro: Rollout, stats: dict[str, float], loss: torch.Tensor, update_s: float) -> None:
        lengths = ro.completion_mask.sum(1).float()
        metrics = {
            "train/loss": loss.float(),
            "train/reward": ro.total.float().mean(),
            "train/reward_std": ro.total.float().std(unbiased=False),
            "train/accuracy": ro.correct.mean(),
            "train/completion_length": lengths.mean(),
            "train/nfe_per_rollout": float(ro.nfe),
            "train/rollout_s": ro.seconds,
            "train/update_s": update_s,
            "train/lr": self.optimizers().param_groups[0]["lr"],
            **{f"train/{k}": v for k, v in stats.items()},
        }
        for name, values in ro.rewards.items():
            metrics[f"train/reward_{name}"] = values.float().mean()
            metrics[f"train/reward_{name}_std"] = values.float().std(unbiased=False)
        if ro.tse is not None:
            metrics["train/tse"] = ro.tse.mean()
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in metrics.items()}, prog_bar=False,
                      sync_dist=True, batch_size=len(ro.texts))
        every = self.settings.sample_table_every
        rollout_index = self.global_step // self.optimizer_steps_per_batch
        if every and (rollout_index - 1) % every == 0:
            self._log_samples(ro, rollout_index)

    @rank_zero_only
    def _log_samples(self, ro: Rollout, rollout_index: int) -> None:
        if self.trainer.sanity_checking or not hasattr(self.logger, "run_id"):
            return
        from dllm_lab.tracking.mlflow import log_table

        rows = [
            {"rollout": rollout_index, "task": t, "completion": c, "reward": float(r), "advantage": float(a),
             "correct": bool(y)}
            for t, c, r, a, y in zip(ro.tasks, ro.texts, ro.total, ro.advantages, ro.correct, strict=True)
        ]
        log_table(self.logger, rows, f"samples/rollout_{rollout_index:06d}.json")

    # -- validation: greedy accuracy on the held-out sets --------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        log_greedy_accuracy(self, batch, self.eval_decoder, self.tasks)
