"""Reading Lightning checkpoints without running code from them."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint that holds more than tensors and plain containers: loading it could run code."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ``.ckpt`` as a dict, loaded with ``torch.load(weights_only=True)``.

    A pickle can carry code that runs while it is read; ``weights_only`` refuses anything but tensors,
    numbers, strings and containers, which is all a dllm-lab checkpoint holds (its hyper-parameters are
    plain containers). A file that needs more is refused with :class:`UnsafeCheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, and reading it "
            f"could run code. dllm-lab checkpoints never do; only pass checkpoints written by dllm-train. "
            f"(torch.load(weights_only=True): {str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable checkpoint ({err}); was the file cut short?") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a Lightning checkpoint (got a {type(ckpt).__name__}, expected a dict)")
    return ckpt
