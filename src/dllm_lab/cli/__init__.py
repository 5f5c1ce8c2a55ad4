"""Thin Hydra entry points: ``dllm-train`` and ``dllm-eval`` (plus checkpoint export)."""

from __future__ import annotations

import logging


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def tidy_lightning_logging() -> None:
    """Lightning adds its own console handlers on top of Hydra's root logger, so every line shows twice;
    keep Hydra's (console + file) and drop Lightning's product tips."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.addFilter(_NoAdverts())
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoAdverts())
