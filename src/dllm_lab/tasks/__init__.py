r"""Tasks: one module per benchmark (prompt, answer parser, equivalence, correctness, d1 rewards, synthetic
generator) and the readers of real datasets (``sources``).

>>> task = get_task("countdown")
>>> task.is_correct("<answer>\\boxed{100-93+16}</answer>", {"numbers": [16, 93, 100], "target": 23})
True
"""

from __future__ import annotations

from typing import Any

from dllm_lab.tasks.arith import Arith
from dllm_lab.tasks.base import (
    D1_SYSTEM_PROMPT,
    Example,
    Task,
    extract_answer_text,
    extract_boxed,
    parse_number,
)
from dllm_lab.tasks.countdown import Countdown
from dllm_lab.tasks.equations import Equations
from dllm_lab.tasks.gsm8k import GSM8K, SVAMP
from dllm_lab.tasks.math500 import MATH500
from dllm_lab.tasks.safe_eval import UnsafeExpression, safe_arith_eval
from dllm_lab.tasks.sudoku import Sudoku4

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Arith, GSM8K, SVAMP, MATH500, Countdown, Sudoku4, Equations)
}


def task_name_of(key: str) -> str:
    """The task of an evaluation-set key: ``countdown.d1`` (a second, labelled set of ``countdown``, e.g. the
    real test file beside the synthetic one) -> ``countdown``; a plain task name is its own task."""
    return key.split(".", 1)[0]


def get_task(name: str, model: Any = None, **options: Any) -> Task:
    """The task called ``name`` (or labelled ``<task>.<label>``: see :func:`task_name_of`). Its prompt style
    is ``options["prompt_style"]`` if given, else the ``prompt_style`` of ``model`` (a
    :class:`~dllm_lab.models.DiffusionLM`: the format the checkpoint was trained with), else ``d1``. Other
    ``options`` go to the task's constructor."""
    try:
        cls = TASKS[task_name_of(name)]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; available: {sorted(TASKS)}") from None
    if options.get("prompt_style") is None:
        options["prompt_style"] = getattr(model, "prompt_style", None) or "d1"
    return cls(**options)


__all__ = [
    "D1_SYSTEM_PROMPT", "TASKS", "Example", "Task", "UnsafeExpression", "extract_answer_text",
    "extract_boxed", "get_task", "parse_number", "safe_arith_eval", "task_name_of",
]
