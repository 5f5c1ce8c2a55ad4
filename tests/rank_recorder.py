"""A Lightning callback for the distributed tests (not a test module): each rank writes, after every training step,
its rollout's prompts and texts and digests of its gradients and weights to ``rank<r>_step<s>.json``. Importable by
a subprocess (``+callbacks.rec={_target_: rank_recorder.RankRecorder, out_dir: ...}`` with tests/ on PYTHONPATH)."""

from __future__ import annotations

import hashlib
import json

import lightning as L
import torch


def digest(tensors) -> str:
    out = hashlib.sha256()
    for value in tensors:
        out.update(value.detach().cpu().numpy().tobytes())
    return out.hexdigest()


class RankRecorder(L.Callback):
    """Per rank: the rollout texts and prompts, and digests of the gradients before and the weights after each step."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.lm.parameters() if p.grad is not None]
        self.grad_digest = digest(grads)
        self.grad_norm = float(torch.stack([g.norm() for g in grads]).norm()) if grads else 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        record = {"texts": pl_module.last_rollout.texts, "weights": digest(pl_module.lm.model.state_dict().values()),
                  "prompts": [str(e) for e in pl_module.last_rollout.examples], "grads": self.grad_digest,
                  "grad_norm": self.grad_norm, "world_size": trainer.world_size, "node_rank": trainer.node_rank}
        with open(f"{self.out_dir}/rank{trainer.global_rank}_step{trainer.global_step}.json", "w") as fh:
            json.dump(record, fh)
