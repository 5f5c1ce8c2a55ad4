"""Errors every layer may raise: a leaf module with no imports from the package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting that cannot work. The message names the override that fixes it (``decoder.steps=32``)."""
