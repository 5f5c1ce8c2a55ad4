"""One adapter over every masked diffusion LM: LLaDA, Dream, and any transformers masked LM.

Decoders, losses and estimators only ever call :meth:`DiffusionLM.logits`, which returns ``(B, N, V)``
logits aligned so that position ``i`` predicts token ``i`` (Dream's right shift is undone here, once).
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dllm_lab.models.chat import ChatFormat
from dllm_lab.tasks.base import PROMPT_STYLES

log = logging.getLogger(__name__)

FAMILIES = ("llada", "dream", "masked_lm", "bidirectional")
# families whose forward takes the transformers cache interface with aligned logits (decoder.cache=prefix|dual)
CACHE_FAMILIES = ("bidirectional",)
# docs/methods.md "Conventions": ids fixed by the released checkpoints.
LLADA_MASK_ID, LLADA_EOS_ID, LLADA_EOT_ID = 126336, 126081, 126348
DREAM_MASK_ID, DREAM_EOS_ID = 151666, 151643


@functools.cache
def _cache_argument(forward: Any) -> str:
    """The name a forward takes its key/value cache under: transformers >= 5.2x says ``cache``, older releases
    and remote code ``past_key_values`` (once per forward function, not per decoding step)."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


class DiffusionLM(nn.Module):
    """A masked diffusion LM with its tokenizer and token conventions.

    Attributes: ``family``, ``mask_token_id``, ``eos_token_ids`` (ids that end a completion; padding
    uses the first), ``eot_token_ids`` (end-of-turn ids some families add, e.g. LLaDA's ``<|eot_id|>``),
    ``pad_token_id``, ``tokenizer``, ``max_length``, ``prompt_style`` (the prompt format the model was
    trained with: ``d1`` for LLaDA/Dream, what the checkpoint's ``config.yaml`` says for dllm-lab exports).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        family: str,
        mask_token_id: int,
        eos_token_ids: tuple[int, ...],
        eot_token_ids: tuple[int, ...] = (),
        pad_token_id: int | None = None,
        max_length: int | None = None,
        prompt_style: str = "d1",
    ) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family={family!r}: choose one of {FAMILIES}")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style={prompt_style!r}: choose one of {PROMPT_STYLES}")
        self.model = model
        self.tokenizer = tokenizer
        self.family = family
        self.mask_token_id = int(mask_token_id)
        self.eos_token_ids = tuple(int(i) for i in eos_token_ids)
        self.eot_token_ids = tuple(int(i) for i in eot_token_ids)
        self.pad_token_id = int(pad_token_id if pad_token_id is not None else self.eos_token_ids[0])
        self.max_length = max_length or _context_length(model)
        self.prompt_style = prompt_style

    @property
    def can_cache(self) -> bool:
        """Whether decoding may cache keys/values (``decoder.cache=prefix|dual``, docs/methods.md "KV cache"): the
        model's forward must take ``past_key_values``, explicit ``position_ids`` and a 4D attention mask, and return
        aligned logits. The ``bidirectional`` family (a transformers decoder such as Llama or Qwen2 run with full
        attention) does; ModernBERT takes no cache, LLaDA's released code offsets positions by the cache length
        (no dual cache), and Dream's logits are shifted by one."""
        return self.family in CACHE_FAMILIES

    @property
    def shift(self) -> bool:
        """Dream predicts token ``i+1`` at position ``i``; the adapter realigns it."""
        return self.family == "dream"

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned logits ``(B, N, V)`` for ``input_ids`` ``(B, N)``; ``attention_mask`` ``(B, N)``, 1 = real."""
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # lets every family take its fast unpadded path
        if self.family == "dream":
            out = self._dream_forward(input_ids, attention_mask)
            # (B, N, V): model logit at i predicts i+1 -> shift right so position i predicts i
            return torch.cat([out[:, :1], out[:, :-1]], dim=1)
        if self.family == "llada":
            # LLaDA's remote code takes an additive attention bias rather than a padding mask
            bias = None
            if attention_mask is not None:
                keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, N)
                bias = torch.zeros(keep.shape, dtype=torch.float32, device=input_ids.device)
                bias = bias.masked_fill(~keep, torch.finfo(torch.float32).min)
            return self.model(input_ids, attention_bias=bias).logits
        if self.family == "bidirectional":
            return self.cached_forward(input_ids, *full_attention(attention_mask, input_ids))[0]
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    forward = logits

    def cached_forward(
        self, input_ids: torch.Tensor, mask4d: torch.Tensor, position_ids: torch.Tensor, past: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """Logits ``(B, q, V)`` of the ``q`` query tokens and the cache, which now ends with their keys/values.
        ``mask4d`` ``(B, 1, q, cached + q)``: True where a query may attend a key; ``position_ids`` ``(B, q)``."""
        if not self.can_cache:
            raise ValueError(f"family={self.family!r} cannot cache keys/values (DiffusionLM.can_cache)")
        name = _cache_argument(getattr(self.model.forward, "__func__", self.model.forward))
        out = self.model(input_ids=input_ids, attention_mask=mask4d, position_ids=position_ids,
                         use_cache=past is not None, **{name: past})
        return out.logits, out.get(name)

    def _dream_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            return self.model(input_ids, attention_mask="full").logits
        # Dream expects a (B, 1, N, N) boolean mask and position ids that skip the left padding (a padding query
        # attends to itself, else its NaN would leak through the shift into the first real position).
        mask4d, position_ids = full_attention(attention_mask, input_ids)
        return self.model(input_ids, attention_mask=mask4d, position_ids=position_ids).logits

    @property
    def end_token_ids(self) -> tuple[int, ...]:
        """Every id that ends a completion: EOS ids, then end-of-turn ids."""
        return (*self.eos_token_ids, *self.eot_token_ids)

    # -- text helpers ---------------------------------------------------------------------------------
    @property
    def chat(self) -> ChatFormat:
        """The picklable prompt/response encoder that data workers use."""
        return ChatFormat(self.tokenizer, self.eos_token_ids, self.eot_token_ids)

    def encode_prompt(self, user_message: str) -> list[int]:
        """Token ids of a one-turn chat ending in the assistant header (the generation prompt)."""
        return self.chat.prompt_ids(user_message)

    def decode_completion(self, ids: torch.Tensor | list[int]) -> str:
        """Text of generated ids, cut at the first end token (EOS or EOT)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        stop = set(self.eos_token_ids) | set(self.eot_token_ids)
        for i, tok in enumerate(ids):
            if tok in stop:
                ids = ids[:i]
                break
        ids = [t for t in ids if t != self.mask_token_id]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def save_pretrained(self, path: str | Path) -> None:
        """Weights and tokenizer, loadable by :func:`load_model`. A LoRA (peft) policy is saved merged
        into a copy of its base (the live model keeps its adapter)."""
        model = self.model
        if hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def full_attention(attention_mask: torch.Tensor | None, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bidirectional ``(B, 1, N, N)`` boolean mask and the position ids ``(B, N)`` of a left-padded batch.
    Real queries see every real key; a padding query sees itself only (a fully masked row turns into NaN in
    some SDPA kernels). Position ids skip the left padding, so a row's positions do not depend on its batch."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    m = attention_mask.bool()
    eye = torch.eye(m.shape[1], dtype=torch.bool, device=m.device)
    mask4d = (m[:, None, None, :] & m[:, None, :, None]) | eye[None, None]
    return mask4d, padded_positions(attention_mask)


def padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``(B, N)`` that start at 0 on each row's first real token (left padding sits at 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _context_length(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 4096


def detect_family(config: Any) -> str:
    model_type = str(getattr(config, "model_type", "")).lower()
    if "llada" in model_type:
        return "llada"
    if "dream" in model_type:
        return "dream"
    if getattr(config, "dllm_family", None) in FAMILIES:  # set by dllm-lab's builders (models/tiny.py)
        return str(config.dllm_family)
    return "masked_lm"


def load_model(
    name_or_path: str | Path,
    family: str | None = None,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    mask_token_id: int | None = None,
    eos_token_ids: list[int] | tuple[int, ...] | None = None,
    prompt_style: str | None = None,
    revision: str | None = None,
    **model_kwargs: Any,
) -> DiffusionLM:
    """Load a local directory or hub id as a :class:`DiffusionLM`.

    ``family`` is detected from the config's ``model_type`` unless given. LLaDA and Dream ship custom
    code: pass ``trust_remote_code=True`` (``model.trust_remote_code=true``) to allow it; it is never
    enabled implicitly; ``revision`` pins the hub commit whose code and weights are used (the LLaDA and
    Dream presets pin one). ``prompt_style``: ``None`` takes the checkpoint's own (``data.prompt_style`` of
    the ``config.yaml`` a dllm-lab export carries), else ``d1``.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    source = str(name_or_path)
    if Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())
    elif trust_remote_code and revision is None:
        log.warning("running the remote code of %s from its default branch, which may change under you; pin "
                    "model.revision=<commit>", name_or_path)
    hub = {"revision": revision} if revision else {}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)
    except ValueError as err:
        if "trust_remote_code" in str(err) and not trust_remote_code:
            raise ValueError(
                f"{name_or_path} ships custom model code; review it, then allow it with "
                "trust_remote_code=True (Hydra: model.trust_remote_code=true)"
            ) from err
        raise
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load a model from {name_or_path!r}: not a local directory with config.json and not "
            f"reachable on the hub ({err}). Use checkpoints/tiny-mdlm for the embedded model."
        ) from err
    family = family or detect_family(config)
    if family not in FAMILIES:
        raise ValueError(f"model.family={family!r}: choose one of {FAMILIES}")
    tokenizer = _load_tokenizer(AutoTokenizer, source, name_or_path, trust_remote_code, hub)

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    auto_cls = {"masked_lm": AutoModelForMaskedLM, "bidirectional": AutoModelForCausalLM}.get(family, AutoModel)
    model = auto_cls.from_pretrained(source, trust_remote_code=trust_remote_code, dtype=torch_dtype, **hub,
                                     **model_kwargs)
    model.eval()
    _check_finite(model, name_or_path)

    eot: tuple[int, ...] = ()
    if family == "llada":
        mask_token_id = mask_token_id if mask_token_id is not None else LLADA_MASK_ID
        eos_token_ids = eos_token_ids or (LLADA_EOS_ID,)
        eot = (LLADA_EOT_ID,)
    elif family == "dream":
        # explicit None checks: a token id of 0 is a valid id, not a missing one
        if mask_token_id is None:
            mask_token_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else DREAM_MASK_ID
        if not eos_token_ids:
            eos_token_ids = (tokenizer.eos_token_id if tokenizer.eos_token_id is not None else DREAM_EOS_ID,)
    else:  # masked_lm and bidirectional: the tokenizer names its mask and EOS tokens
        mask_token_id = mask_token_id if mask_token_id is not None else tokenizer.mask_token_id
        if mask_token_id is None:
            raise ValueError(
                f"the tokenizer of {name_or_path} has no mask token; a masked diffusion LM needs one. "
                "Pass mask_token_id=<id> (Hydra: model.mask_token_id=<id>) or add a mask token."
            )
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if eos_token_ids is None and eos is None:
            raise ValueError(f"the tokenizer of {name_or_path} has no EOS token; pass eos_token_ids=[...]")
        eos_token_ids = eos_token_ids or (eos,)
    _check_token_ids(model, name_or_path, mask_token_id, tuple(eos_token_ids) + eot)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]
    style = prompt_style or checkpoint_prompt_style(source) or "d1"
    lm = DiffusionLM(model, tokenizer, family, mask_token_id, tuple(eos_token_ids), eot, pad, prompt_style=style)
    if device is not None:
        lm.to(device)
    return lm


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "tokenizer.tiktoken")


def _load_tokenizer(
    auto_tokenizer: Any, source: str, name: str | Path, trust_remote_code: bool, hub: dict[str, Any]
) -> Any:
    """The model's tokenizer; a local directory without tokenizer files gets a message that says so
    (transformers would blame a missing sentencepiece or tiktoken instead)."""
    local = Path(source)
    if local.is_dir() and not any((local / f).exists() for f in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{name} has model weights but no tokenizer files (none of {', '.join(TOKENIZER_FILES[:2])}, ...); "
            "save the tokenizer next to the weights with tokenizer.save_pretrained(<dir>), as "
            "DiffusionLM.save_pretrained does"
        )
    return auto_tokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)


def checkpoint_prompt_style(path: str | Path) -> str | None:
    """``data.prompt_style`` of the run config (``config.yaml``) saved beside a dllm-lab checkpoint, or ``None``."""
    config_yaml = Path(path) / "config.yaml"
    if not config_yaml.is_file():
        return None
    import yaml

    try:
        run_config = yaml.safe_load(config_yaml.read_text()) or {}
    except yaml.YAMLError:
        log.warning("%s is not valid YAML; using the default prompt style", config_yaml)
        return None
    style = (run_config.get("data") or {}).get("prompt_style") if isinstance(run_config, dict) else None
    return style if style in PROMPT_STYLES else None


def _check_finite(model: nn.Module, name: str | Path) -> None:
    """Refuse weights with NaN or inf: a corrupted file (bytes overwritten on disk) loads without error,
    then decodes empty text and scores 0, which a study would take for a result."""
    bad = [n for n, t in (*model.named_parameters(), *model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"the weights of {name} hold NaN or inf values ({shown}): the checkpoint file is corrupted. "
            "Restore it (for the embedded model: git checkout checkpoints/) or re-export it"
        )


def _vocab_size(model: nn.Module) -> int | None:
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        emb = None
    if isinstance(emb, nn.Embedding):
        return int(emb.num_embeddings)
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) and value > 0 else None


def _check_token_ids(model: nn.Module, name: str | Path, mask_token_id: int, end_ids: tuple[int, ...]) -> None:
    """Fail at load time, not with an index error deep in a decoding loop, when a special id is not a
    token of the model (e.g. LLaDA's fixed ids on a model with another vocabulary)."""
    vocab = _vocab_size(model)
    if vocab is None:
        return
    if not 0 <= int(mask_token_id) < vocab:
        raise ValueError(
            f"mask_token_id={mask_token_id} is not a token of {name} (vocabulary size {vocab}); pass "
            "mask_token_id=<id> (Hydra: model.mask_token_id=<id>) or the right model.family"
        )
    bad = [i for i in end_ids if not 0 <= int(i) < vocab]
    if bad:
        raise ValueError(
            f"end-of-sequence ids {bad} are not tokens of {name} (vocabulary size {vocab}); pass "
            "eos_token_ids=[...] (Hydra: model.eos_token_ids=[...]) or the right model.family"
        )
