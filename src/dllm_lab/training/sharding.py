"""What FSDP needs from the training modules: which modules to wrap, gradient clipping over the sharded
gradients, and a sharded frozen reference policy.

Under FSDP each rank holds a shard of every gradient, so ``torch.nn.utils.clip_grad_norm_`` (what Lightning's
precision plugins call) would measure a part of the norm; Lightning's FSDP plugin refuses it. The FSDP root
module's own ``clip_grad_norm_`` reduces the norm across ranks first; :func:`clip_grad_norm` uses it wherever
the strategy's root module has one, and Lightning's clipping elsewhere. DeepSpeed clips inside its engine
(``gradient_clipping`` of its config, which Lightning fills from ``trainer.gradient_clip_val``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn


def block_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The transformer block classes of ``model``: FSDP's wrap units and the activation-checkpointing units.

    transformers models name them in ``_no_split_modules`` (LlamaDecoderLayer, ModernBertEncoderLayer, LLaDA's
    and Dream's blocks); the classes are looked up among the model's own modules, so remote code works too."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    found = {type(m) for m in model.modules() if type(m).__name__ in names and "Embedding" not in type(m).__name__}
    if not found:
        raise ValueError(
            f"{type(model).__name__} names no transformer block class (_no_split_modules); FSDP needs one to wrap: "
            "pass trainer.strategy=<an FSDPStrategy with auto_wrap_policy> yourself, or use trainer=ddp")
    return found


def build_fsdp_strategy(model: nn.Module, activation_checkpointing: bool = False, **kwargs: Any) -> Any:
    """Lightning's FSDPStrategy wrapping each transformer block of ``model`` (and checkpointing its activations
    when asked)."""
    from lightning.pytorch.strategies import FSDPStrategy

    blocks = block_classes(model)
    return FSDPStrategy(auto_wrap_policy=blocks, activation_checkpointing_policy=blocks if activation_checkpointing
                        else None, **kwargs)


def clip_grad_norm(module: L.LightningModule, optimizer: Any, max_norm: float) -> None:
    """Clip the gradients of ``module`` to a global norm of ``max_norm``, correctly under FSDP."""
    trainer = module._trainer
    strategy = trainer.strategy if trainer is not None else None
    if strategy is not None and "deepspeed" in type(strategy).__name__.lower():
        return  # the engine clips at its step, with its config's gradient_clipping
    root = getattr(strategy, "model", None) if strategy is not None else None
    if root is not None and hasattr(root, "clip_grad_norm_"):  # an FSDP root: the norm over every rank's shard
        root.clip_grad_norm_(max_norm)
        return
    module.clip_gradients(optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm")


class ShardedClipping:
    """Mixin for automatically optimised modules: ``trainer.gradient_clip_val`` by norm, correct under FSDP."""

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        if not gradient_clip_val:
            return
        if gradient_clip_algorithm not in (None, "norm"):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)  # type: ignore[attr-defined]
            return
        clip_grad_norm(self, optimizer, float(gradient_clip_val))  # type: ignore[arg-type]


def shard_reference(reference: nn.Module, strategy: Any) -> nn.Module:
    """The frozen reference policy sharded like the policy under an FSDP strategy (each rank holds a shard, the
    blocks are gathered one at a time in the forward); unchanged under any other strategy."""
    if "fsdp" not in type(strategy).__name__.lower():
        return reference
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    return FullyShardedDataParallel(
        reference, auto_wrap_policy=ModuleWrapPolicy(block_classes(reference)), device_id=strategy.root_device,
        mixed_precision=strategy.mixed_precision_config, sharding_strategy=strategy.sharding_strategy,
    )
