"""User extensions: modules named in ``imports=[...]`` register rewards and decode callbacks when imported.

Every process that looks an extension up by name must have imported it. The job does so at start
(:func:`dllm_lab.factory.build_job`), and the training modules do so again in ``setup``, which runs in every
process a spawning strategy (``ddp_spawn``) starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from dllm_lab.errors import ConfigError


def import_extensions(modules: Iterable[str] | None) -> None:
    """Import each module of ``modules`` (a clear :class:`ConfigError` when one cannot be imported)."""
    for module in modules or []:
        try:
            importlib.import_module(str(module))
        except ImportError as err:
            raise ConfigError(f"imports: cannot import {module!r} ({err}); is it on PYTHONPATH?") from None
