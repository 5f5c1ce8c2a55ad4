"""``GRPOModule``: the GRPO family (d1's diffu-GRPO, the one-step baseline, CJ-GRPO) with task and TCR
rewards, as one LightningModule that only wires the pure pieces of :mod:`dllm_lab.rl`.

One training step = one rollout batch (ALGORITHMS.md section 8):

1. rollout: ``num_generations`` completions per prompt through the decoding engine (any decoder preset,
   temperature > 0), with the trajectory recorded when the estimator needs it and the temporal callback
   when a TCR reward needs TSE;
2. rewards (weighted sum) -> group advantages;
3. old and reference log-probs once, then ``num_iterations`` (``mu``) clipped policy updates, each an
   optimizer step (so ``trainer.max_steps`` counts updates, ``mu`` per rollout).

Optimisation is manual (``mu`` steps per batch); under DDP Lightning re-arms the gradient reducer before
every ``manual_backward``, so each update averages gradients across ranks.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.config import ConfigError
from dllm_lab.decoding import DecodeConfig, decode
from dllm_lab.decoding.callbacks import DecodeCallback, TrajectoryRecorder
from dllm_lab.metrics.temporal import TSE_ALPHA, TSE_SKIP_RATIO, _first_kept
from dllm_lab.metrics.temporal_callback import TemporalCallback
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.rl import (
    commit_steps,
    completion_mask,
    full_mask_logps,
    group_advantages,
    one_step_logps,
    policy_loss,
    registered_rewards,
    tcr_reward,
    trajectory_logps,
    weighted_sum,
)
from dllm_lab.tasks import get_task
from dllm_lab.training.mdlm import warmup_cosine

# A checkpoint after training_step holds the state after all mu updates of the rollout, which is what resuming
# needs (tested); Lightning's advice to save the pre-update state does not apply.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")

ESTIMATORS = ("one_step", "full_mask", "trajectory")
REWARDS = ("task", "correct", "tcr")  # d1 task reward, 0/1 correctness, TCR (-TSE or a scoring rule)


@dataclasses.dataclass
class Rollout:
    """One rollout batch, ``N = prompts * G`` rows: prompt ids/mask (N, P), completion ids (N, L) and
    ``completion_mask`` (N, L) (tokens up to and including the first end token),
    ``commit_step`` (N, L) for ``trajectory``, rewards per function and total (N,), advantages (N,),
    correctness (N,), TSE (N,) when computed, texts, NFE of the decode, wall time."""

    prompt_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion: torch.Tensor
    completion_mask: torch.Tensor
    commit_step: torch.Tensor | None
    num_steps: int
    rewards: dict[str, torch.Tensor]
    total: torch.Tensor
    advantages: torch.Tensor
    correct: torch.Tensor
    tse: torch.Tensor | None
    texts: list[str]
    examples: list[dict[str, Any]]
    tasks: list[str]
    nfe: int
    seconds: float


class GRPOModule(L.LightningModule):
    """GRPO-family RL fine-tuning of a :class:`DiffusionLM`.

    Args:
        lm: the policy (full fine-tuning, or LoRA when ``lora`` is given).
        decode_config: rollout decoder (its ``temperature`` must be > 0).
        eval_decode_config: greedy decoder of validation (accuracy on held-out problems).
        estimator: ``one_step`` (diffu-GRPO), ``full_mask`` (one-step baseline), ``trajectory`` (CJ-GRPO).
        rewards: reward name -> weight, names from :data:`REWARDS`; ``tcr_rule``: rule of the ``tcr`` reward.
        num_generations: ``G`` completions per prompt; num_iterations: ``mu`` updates per rollout.
        eps, beta: clip range and k3-KL weight; p_mask_prompt: prompt masking of ``one_step``.
        advantage_scale: ``none`` | ``group`` | ``batch`` std scaling.
        lora: peft LoRA settings (``r``, ``alpha``, ``dropout``, ``target_modules``) or ``None``; the
            reference policy is then the base with the adapter disabled, else a frozen copy.
        max_grad_norm: gradient clipping per update (``None``: off).
    """

    def __init__(
        self,
        lm: DiffusionLM,
        decode_config: DecodeConfig,
        eval_decode_config: DecodeConfig | None = None,
        estimator: str = "one_step",
        rewards: dict[str, float] | None = None,
        tcr_rule: str = "spherical",
        tse_skip_ratio: float = TSE_SKIP_RATIO,
        tse_weighting: str = "exp",
        tse_alpha: float = TSE_ALPHA,
        num_generations: int = 6,
        num_iterations: int = 1,
        eps: float = 0.5,
        beta: float = 0.04,
        p_mask_prompt: float = 0.15,
        advantage_scale: str = "none",
        lora: dict[str, Any] | None = None,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 0,
        total_steps: int = 1000,
        min_lr_ratio: float = 1.0,
        max_grad_norm: float | None = 1.0,
        sample_table_every: int = 0,
        seed: int = 0,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        rewards = dict(rewards or {"task": 1.0})
        check_grpo_settings(estimator, rewards, num_generations, num_iterations, decode_config)
        self.save_hyperparameters(ignore=["lm", "decode_config", "eval_decode_config"], logger=False)
        self.automatic_optimization = False
        self.decode_config = decode_config
        self.eval_decode_config = eval_decode_config or dataclasses.replace(decode_config, temperature=0.0, seed=None)
        self.lm = lm
        self._frozen_ref: list[DiffusionLM] = []  # a list, so the copy is not a registered submodule
        if lora:
            from peft import LoraConfig, get_peft_model

            target = lora.get("target_modules", "all-linear")
            lm.model = get_peft_model(lm.model, LoraConfig(
                r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                lora_dropout=float(lora.get("dropout", 0.0)),
                target_modules=target if isinstance(target, str) else list(target),
            ))
        elif beta > 0:
            self._frozen_ref.append(copy.deepcopy(lm).eval().requires_grad_(False))
        self.train()
        self.tasks: dict[str, Any] = {}
        self.last_rollout: Rollout | None = None  # for callbacks and notebooks

    @property
    def optimizer_steps_per_batch(self) -> int:
        """Updates per rollout batch (the DataModule's resume position divides by it)."""
        return int(self.hparams.num_iterations)

    # -- setup -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.lm.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, hp.warmup_steps, hp.total_steps, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_fit_start(self) -> None:
        for ref in self._frozen_ref:
            ref.to(self.device)

    def _task(self, name: str):
        if name not in self.tasks:
            self.tasks[name] = get_task(name)
        return self.tasks[name]

    @contextlib.contextmanager
    def _reference(self) -> Iterator[DiffusionLM]:
        """The reference policy: the base without the LoRA adapter, or the frozen copy."""
        if self.hparams.lora:
            with self.lm.model.disable_adapter():
                yield self.lm
        else:
            yield self._frozen_ref[0]

    # -- rollout -----------------------------------------------------------------------------------------
    def _rollout_seed(self) -> int:
        """Distinct per rollout and rank, reproducible across runs and resumes."""
        rollout_index = self.global_step // self.optimizer_steps_per_batch
        world = self.trainer.world_size if self._trainer is not None else 1  # no trainer: notebooks, benchmarks
        return int(self.hparams.seed) * 1_000_003 + rollout_index * world + self.global_rank

    def rollout(self, batch: dict[str, Any]) -> Rollout:
        hp = self.hparams
        G = hp.num_generations
        start = time.perf_counter()
        prompt_ids = batch["prompt_ids"].repeat_interleave(G, 0)
        attention_mask = batch["attention_mask"].repeat_interleave(G, 0)
        examples = [e for e in batch["examples"] for _ in range(G)]
        tasks = [t for t in batch["tasks"] for _ in range(G)]
        callbacks: list[DecodeCallback] = []
        if hp.estimator == "trajectory":
            callbacks.append(TrajectoryRecorder())
        if "tcr" in hp.rewards:
            if len(set(tasks)) > 1:
                raise ConfigError(f"the tcr reward needs one task per run; data.tasks={sorted(set(tasks))}")
            callbacks.append(TemporalCallback(
                self.lm, self._task(tasks[0]), examples, vote_weightings=(), tse_skip_ratio=hp.tse_skip_ratio,
                tse_weighting=hp.tse_weighting, tse_alpha=hp.tse_alpha,
            ))
        config = dataclasses.replace(self.decode_config, seed=self._rollout_seed())
        self.lm.eval()
        out = decode(self.lm, prompt_ids, config, callbacks, attention_mask)
        self.lm.train()
        completion = out.sequences.clone()  # decode runs in inference mode: make autograd-usable copies
        correct = torch.tensor(
            [self._task(t).is_correct(c, e) for t, c, e in zip(tasks, out.texts, examples, strict=True)],
            dtype=torch.float32,
        )
        rewards: dict[str, torch.Tensor] = {}
        tse = None
        for name in hp.rewards:
            if name == "task":
                values = [self._task(t).reward(c, e) for t, c, e in zip(tasks, out.texts, examples, strict=True)]
                rewards[name] = torch.tensor(values, dtype=torch.float32)
            elif name == "correct":
                rewards[name] = correct.clone()
            elif name == "tcr":
                samples = out.extras["temporal"]
                tse = torch.tensor([s.tse for s in samples], dtype=torch.float32)
                kept = [len(s.answers) - _first_kept(len(s.answers), hp.tse_skip_ratio) for s in samples]
                max_entropy = torch.tensor([math.log(k) for k in kept], dtype=torch.float32)
                rewards[name] = tcr_reward(tse, correct, hp.tcr_rule, max_entropy)
            else:  # registered with dllm_lab.rl.register_reward
                rewards[name] = torch.tensor(registered_rewards()[name](out.texts, examples), dtype=torch.float32)
        total = weighted_sum(rewards, hp.rewards)
        advantages = group_advantages(total, G, scale=hp.advantage_scale)
        commit_step, num_steps = None, 0
        if hp.estimator == "trajectory":
            committed = out.extras["trajectory"]["committed"]
            if committed.shape[0] == 0:
                raise ConfigError("algo.estimator=trajectory: the decoder recorded no step to replay")
            commit_step, num_steps = commit_steps(committed).to(self.device), int(committed.shape[0])
        return Rollout(
            prompt_ids=prompt_ids, attention_mask=attention_mask, completion=completion,
            completion_mask=completion_mask(completion, self.lm.end_token_ids), commit_step=commit_step,
            num_steps=num_steps, rewards=rewards, total=total.to(self.device), advantages=advantages.to(self.device),
            correct=correct, tse=tse, texts=out.texts, examples=examples, tasks=tasks, nfe=out.nfe,
            seconds=time.perf_counter() - start,
        )

    # -- log-probabilities ---------------------------------------------------------------------------------
    def _iteration_seed(self, rollout_seed: int, iteration: int) -> int:
        """One prompt-mask seed per inner iteration, shared by the old, reference and current policy."""
        return rollout_seed * 97 + iteration

    def logps(
        self, lm: DiffusionLM, ro: Rollout, iteration: int, rollout_seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs and their mask: (N, L) for one-step estimators, (S, N, L) for ``trajectory``."""
        hp = self.hparams
        if hp.estimator == "trajectory":
            return trajectory_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion, ro.commit_step, ro.num_steps)
        if hp.estimator == "full_mask":
            return full_mask_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion), ro.completion_mask
        seed = self._iteration_seed(rollout_seed, iteration)
        logp = one_step_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion, seed, hp.p_mask_prompt)
        return logp, ro.completion_mask

    # -- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        rollout_seed = self._rollout_seed()
        ro = self.last_rollout = self.rollout(batch)
        start = time.perf_counter()
        mu = hp.num_iterations
        # the mask of one_step differs per iteration; the other estimators' inputs do not
        per_iteration = hp.estimator == "one_step"
        with torch.no_grad():
            old = None
            if mu > 1:
                self.lm.eval()
                old = [self.logps(self.lm, ro, i, rollout_seed)[0] for i in range(mu if per_iteration else 1)]
                self.lm.train()
            ref = None
            if hp.beta > 0:
                with self._reference() as ref_lm:
                    ref = [self.logps(ref_lm, ro, i, rollout_seed)[0] for i in range(mu if per_iteration else 1)]
        stats: dict[str, float] = {}
        losses = []
        for i in range(mu):
            logp, mask = self.logps(self.lm, ro, i, rollout_seed)
            j = i if per_iteration else 0
            old_logp = logp.detach() if old is None else old[j]
            loss, parts = policy_loss(logp, old_logp, None if ref is None else ref[j], ro.advantages, mask,
                                      hp.eps, hp.beta)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite GRPO loss at step {self.global_step}; lower algo.lr or algo.beta, or set "
                    "algo.max_grad_norm; the last checkpoint is kept"
                )
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if hp.max_grad_norm:
                self.clip_gradients(optimizer, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
            for k, v in parts.items():
                stats[k] = stats.get(k, 0.0) + float(v) / mu
        self._log_rollout(ro, stats, torch.stack(losses).mean(), time.perf_counter() - start)
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
        every = self.hparams.sample_table_every
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
        name = batch["tasks"][0]
        out = decode(self.lm, batch["prompt_ids"], self.eval_decode_config, (), batch["attention_mask"])
        task = self._task(name)
        correct = [task.is_correct(c, e) for c, e in zip(out.texts, batch["examples"], strict=True)]
        self.log(f"val/{name}/accuracy", sum(correct) / max(1, len(correct)), batch_size=len(correct),
                 sync_dist=True, add_dataloader_idx=False)


def check_grpo_settings(
    estimator: str, rewards: dict[str, float], num_generations: int, num_iterations: int, decode_config: DecodeConfig
) -> None:
    """Fail at start, naming the setting, instead of mid-run."""
    if estimator not in ESTIMATORS:
        raise ConfigError(f"algo.estimator={estimator!r}: choose one of {ESTIMATORS}")
    known = (*REWARDS, *registered_rewards())
    unknown = sorted(set(rewards) - set(known))
    if unknown or not rewards:
        raise ConfigError(
            f"algo.rewards={list(rewards)}: reward names must be among {known} (add your own with "
            "dllm_lab.rl.register_reward)"
        )
    if num_generations < 2:
        raise ConfigError(f"algo.num_generations={num_generations}: GRPO needs >= 2 completions per prompt")
    if num_iterations < 1:
        raise ConfigError(f"algo.num_iterations={num_iterations}: must be >= 1")
    if decode_config.temperature <= 0:
        raise ConfigError(
            f"algo.temperature={decode_config.temperature}: rollouts must sample (temperature > 0), "
            "or every completion of a group is the same"
        )
