"""``PosteriorSFTModule``: posterior SFT (No Compute Left Behind, arXiv 2510.19990; docs/methods.md
"Posterior SFT") as a LightningModule that only wires the pieces of :mod:`dllm_lab.rl.posterior`.

One training step, top to bottom in :meth:`PosteriorSFTModule.training_step`:

1. sample ``K`` reasoning traces per prompt from ``p(r | c, a*)`` with the sampler model (the initial
   model, or the trained one every ``resample_every`` steps), each with its answer log-likelihood;
2. filter them (``algo.filter``) and lay the kept ones out in the model's normal answer format;
3. the masked diffusion SFT loss on them (prompt clean, response masked at t ~ U(0, 1)), one optimizer step;
4. logs: kept fraction, answer log-likelihood (all and kept), trace length, NFE, times, a sample table.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.data.collate import SFTCollator
from dllm_lab.decoding import DecodeConfig
from dllm_lab.errors import ConfigError
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.rl.posterior import PosteriorSettings, filter_traces, sample_posterior_traces, sft_items
from dllm_lab.training.losses import mdlm_loss
from dllm_lab.training.optim import OptimSettings, build_optimizer
from dllm_lab.training.progress import decode_progress
from dllm_lab.training.sharding import ShardedClipping
from dllm_lab.training.validation import TaskCache, log_greedy_accuracy

# A batch that keeps no trace skips its optimizer step (optimizer_step below); the schedule still advances.
warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")


class PosteriorSFTModule(ShardedClipping, L.LightningModule):
    """Posterior SFT of a :class:`DiffusionLM` on prompt batches with gold answers.

    Args:
        lm: the model trained (full fine-tuning).
        settings: the ``algo`` block (K, temperature, filter, rounds).
        sampler: the trace decoder: infilling with ``posterior=true`` (``settings.temperature`` replaces its
            temperature).
        eval_decoder: greedy decoder of validation (accuracy on the held-out sets).
        optim: AdamW and its schedule. seed: the run's seed (trace noise and SFT noise derive from it, per
            step and rank). run_config: the resolved run config, saved in every checkpoint.
        collator: the SFT noising of the kept traces; the run passes its DataModule's, so ``data.*``
            (``min_response_length``, block noise) shape posterior SFT batches as they shape SFT ones.
    """

    def __init__(
        self,
        lm: DiffusionLM,
        settings: PosteriorSettings,
        sampler: DecodeConfig,
        eval_decoder: DecodeConfig,
        optim: OptimSettings | None = None,
        seed: int = 0,
        run_config: dict[str, Any] | None = None,
        collator: SFTCollator | None = None,
    ) -> None:
        super().__init__()
        if not (sampler.infill and sampler.posterior):
            raise ConfigError("algo.sampler: posterior SFT samples reasoning given the gold answer; use an infilling "
                              "decoder with posterior=true (algo.sampler_preset=posterior)")
        self.save_hyperparameters({"seed": seed, "run_config": run_config}, logger=False)
        self.settings, self.sampler, self.eval_decoder, self.seed = settings, sampler, eval_decoder, seed
        self.optim = optim or OptimSettings()
        self.lm = lm
        # a list, so the copy is not a registered submodule (nor in checkpoints: it is rebuilt from the weights)
        self._sampler_copy: list[DiffusionLM] = []
        if settings.resample_every != 1:
            self._sampler_copy.append(copy.deepcopy(lm).eval().requires_grad_(False))
        self.collator = collator or SFTCollator(lm.mask_token_id, lm.chat.eos_token_ids[0], seed=seed)
        self.tasks = TaskCache(lm)
        self._empty_in_a_row = 0
        self._skip_update = False
        self.last_traces: list[dict[str, Any]] = []  # for callbacks and notebooks
        self.train()

    # -- setup -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return build_optimizer(self.lm.named_parameters(), self.optim)

    def on_fit_start(self) -> None:
        for lm in self._sampler_copy:
            lm.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # rounds (resample_every = N > 1): the sampler holds the weights of the round's start, which a resume needs
        if self._sampler_copy and self.settings.resample_every is not None:
            checkpoint["posterior_sampler"] = self._sampler_copy[0].state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._sampler_copy and "posterior_sampler" in checkpoint:
            self._sampler_copy[0].load_state_dict(checkpoint["posterior_sampler"])

    def _sampler_lm(self) -> DiffusionLM:
        """The model traces are sampled from: the current one, or the copy (refreshed at each new round)."""
        if not self._sampler_copy:
            return self.lm
        every = self.settings.resample_every
        if every is not None and self.global_step > 0 and self.global_step % every == 0:
            self._sampler_copy[0].load_state_dict(self.lm.state_dict())
        return self._sampler_copy[0]

    def _step_seed(self) -> int:
        world = self.trainer.world_size if self._trainer is not None else 1
        return int(self.seed) * 1_000_003 + self.global_step * world + self.global_rank

    # -- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        s = self.settings
        seed = self._step_seed()
        # 1. K traces per prompt from p(r | c, a*), each scored
        traces = self.last_traces = sample_posterior_traces(self._sampler_lm(), batch, self.sampler, s, self.tasks,
                                                            seed, decode_progress(self))
        self.lm.train()
        # 2. filter, and lay out in the normal answer format
        kept = filter_traces(traces, s)
        kept_total = self._all_ranks_sum(len(kept))
        if kept_total == 0:
            self._empty_in_a_row += 1
            if self._empty_in_a_row >= s.max_empty_batches:
                raise ConfigError(
                    f"posterior SFT kept no trace in {self._empty_in_a_row} batches in a row "
                    f"({s.describe_filter()}); loosen the filter (a lower algo.tau, algo.filter=top_fraction) or "
                    "check the sampler (algo.sampler)"
                )
        else:
            self._empty_in_a_row = 0
        self._skip_update = kept_total == 0
        start = time.perf_counter()
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(batch["prompt_ids"], batch["attention_mask"],
                                                                   strict=True)]
        # a rank with nothing kept still runs the graph (zero loss), so that DDP's gradient reduction matches
        items = sft_items(kept or traces[:1], prompts, self.lm, self.sampler, f"{seed}")
        sft = {k: v.to(self.device) for k, v in self.collator(items).items()}
        if not kept:
            sft["loss_mask"] = torch.zeros_like(sft["loss_mask"])
        # 3. the masked diffusion SFT loss
        logits = self.lm.logits(sft["input_ids"])
        loss = mdlm_loss(logits, sft["labels"], sft["loss_mask"], sft["p_mask"], sft["response_lengths"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite posterior SFT loss at step {self.global_step}; lower algo.lr")
        # 4. logs
        self._log_traces(traces, kept, loss, time.perf_counter() - start)
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Lightning's step, skipped (gradients dropped) when no rank kept a trace."""
        if optimizer_closure is not None:
            optimizer_closure()
        if self._skip_update:
            optimizer.zero_grad(set_to_none=True)
        else:
            optimizer.step()

    def _all_ranks_sum(self, value: int) -> int:
        if self._trainer is None or self.trainer.world_size == 1:
            return value
        total = self.trainer.strategy.reduce(torch.tensor(float(value), device=self.device), reduce_op="sum")
        return int(total)

    def _log_traces(self, traces: list[dict[str, Any]], kept: list[dict[str, Any]], loss: torch.Tensor,
                    update_s: float) -> None:
        ll = torch.tensor([t["answer_ll"] for t in traces], dtype=torch.float32)
        kept_ll = torch.tensor([t["answer_ll"] for t in kept], dtype=torch.float32)
        lengths = torch.tensor([float(t["reasoning_tokens"]) for t in traces])
        metrics = {
            "train/loss": loss.detach().float(),
            "train/kept_fraction": len(kept) / max(1, len(traces)),
            "train/valid_fraction": sum(t["ended"] and not t["has_mask"] for t in traces) / max(1, len(traces)),
            "train/answer_ll": ll.mean(),
            "train/answer_ll_p10": ll.quantile(0.1),
            "train/answer_ll_p50": ll.quantile(0.5),
            "train/answer_ll_p90": ll.quantile(0.9),
            "train/trace_tokens": lengths.mean(),
            "train/sample_s": traces[0]["seconds"] if traces else 0.0,
            "train/update_s": update_s,
            "train/empty_batches": float(self._skip_update),
            "train/lr": self.optimizers().param_groups[0]["lr"],
        }
        if kept:
            metrics["train/kept_answer_ll"] = kept_ll.mean()
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in metrics.items()}, sync_dist=True,
                      batch_size=len(traces))
        every = self.settings.sample_table_every
        if every and self.global_step % every == 0:
            self._log_samples(traces, kept)

    @rank_zero_only
    def _log_samples(self, traces: list[dict[str, Any]], kept: list[dict[str, Any]]) -> None:
        if self._trainer is None or self.trainer.sanity_checking or not hasattr(self.logger, "run_id"):
            return
        from dllm_lab.tracking.mlflow import log_table

        kept_ids = {id(t) for t in kept}
        rows = [{"step": self.global_step, "task": t["task"], "prompt": t["prompt"], "reasoning": t["reasoning"],
                 "answer": t["answer"], "answer_ll": t["answer_ll"], "reasoning_tokens": t["reasoning_tokens"],
                 "kept": id(t) in kept_ids} for t in traces]
        log_table(self.logger, rows, f"samples/traces_{self.global_step:06d}.json")

    # -- validation: greedy accuracy on the held-out sets --------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        log_greedy_accuracy(self, batch, self.eval_decoder, self.tasks)
