"""Equations: one computation per example as plain text, the densest arithmetic signal for a small model.

A training aid for the embedded model, shaped for learning the arithmetic itself. The prompt is the
left-hand side up to ``=`` as plain text after BOS, with no chat template (``chat_template = False``),
and the completion is the value: ``<bos>185-17=`` -> ``168``.
So the value sits right after its operands, exactly as in the reasoning lines of ``arith`` and of
Countdown's halving procedure: sums, differences, halvings, small products, and running-total lines
(``185\n-17=`` -> ``168``) whose first operand is the value on the line above. And

- every masked token of the completion is a digit of the value, computed from clean operands; nothing
  can be copied from a later line (the shortcut that chained reasoning offers under uniform masking);
- about 10 tokens carry one equation, against about 45 for the same line inside a chat-formatted
  completion with its answer wrapper and EOS padding. On a 2-core CPU that is the difference between
  learning to add in minutes and not at all (README, "The embedded tiny model").

It is a full task: ``parse_answer`` reads the value, so decoding accuracy on it is a direct probe of
a model's arithmetic.
"""

from __future__ import annotations

import random
import re
from typing import Any

from dllm_lab.tasks.base import Example, Task

_VALUE = re.compile(r"\s*(-?\d+)\s*$")


def _sum2(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(1, 100), rng.randint(1, 100)
    return f"{a}+{b}", a + b


def _running_op(rng: random.Random, value: int) -> tuple[str, int]:
    """One operation on ``value``, written as a running-total line (``-17`` -> ``value - 17``), as
    Countdown's halving reasoning writes ``+c``, ``-target`` and ``/2``; halving only an even value."""
    ops = ["+", "-", "/"] if value % 2 == 0 else ["+", "-"]
    op = rng.choices(ops, [2.0, 2.0, 1.0][: len(ops)])[0] if value > 0 else "+"
    if op == "/":
        return "/2", value // 2
    k = rng.randint(1, min(value, 100)) if op == "-" else rng.randint(1, 100)
    return f"{op}{k}", value + k if op == "+" else value - k


def _running(rng: random.Random) -> tuple[str, int]:
    """A running-total line after a bare value line (``185\n-17`` -> ``168``)."""
    value = rng.randint(1, 300)
    expression, result = _running_op(rng, value)
    return f"{value}\n{expression}", result


def _difference(rng: random.Random) -> tuple[str, int]:
    a = rng.randint(2, 300)
    b = rng.randint(1, min(a, 100))
    return f"{a}-{b}", a - b


def _half(rng: random.Random) -> tuple[str, int]:
    value = 2 * rng.randint(0, 150)
    return f"{value}/2", value // 2


def _product(rng: random.Random) -> tuple[str, int]:
    a, k = rng.randint(1, 40), rng.randint(2, 3)
    return f"{a}*{k}", a * k


# Weighted towards what the other tasks' reasoning needs most: sums and differences.
KINDS = {"sum2": (_sum2, 3.0), "running": (_running, 4.0), "difference": (_difference, 3.0), "half": (_half, 1.5),
         "product": (_product, 1.0)}
_NAMES = list(KINDS)
_WEIGHTS = [KINDS[n][1] for n in _NAMES]
_STANDALONE = [n for n in _NAMES if n != "running"]  # a context line has no line before it to continue
_STANDALONE_WEIGHTS = [KINDS[n][1] for n in _STANDALONE]


class Equations(Task):
    """``<bos>185-17=`` -> ``168``: one equation as plain text, answered by its value.

    Up to ``context_lines`` complete lines come first (``12+40=52\n7*3=21\n185-17=``), and a
    running-total line then continues the last of them (``12+40=52\n-7=`` -> ``45``). A model trained
    with none computes only at the start of a sequence: after stage 3a (``context_lines=0``) the tiny
    model's sums and differences were 0.99 right after BOS, 0.01 after three other lines and 0.07
    inside a reasoning (``scripts/arith_probe.py``). Learning with context from the start is slow (0.19
    after 1,000 steps); the embedded model's curriculum first learns at BOS (stage 3a), then moves the
    skill into context (stage 3b).
    """

    name = "equations"
    required_fields = ("expression", "value")
    has_synthetic = True
    chat_template = False

    def __init__(self, prompt_style: str = "d1", context_lines: int = 3) -> None:
        super().__init__(prompt_style)
        if context_lines < 0:
            raise ValueError(f"context_lines={context_lines} must be a non-negative number of lines")
        self.context_lines = context_lines

    def build_prompt(self, example: Example) -> str:
        """The context lines, the left-hand side and ``=``; the same in both prompt styles (plain text
        has no system turn)."""
        return "\n".join([*example.get("context", []), f"{example['expression']}="])

    def reference_completion(self, example: Example) -> str:
        return str(example["value"])

    def parse_answer(self, completion: str) -> int | None:
        """The integer that makes up the first line of ``completion``; ``None`` if it is anything else."""
        lines = completion.strip().split("\n")
        match = _VALUE.fullmatch(lines[0]) if lines else None
        return int(match.group(1)) if match else None

    def gold(self, example: Example) -> int:
        return int(example["value"])

    def gold_answer_text(self, example: Example) -> str | None:
        return str(example["value"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and int(a) == int(b)

    def sample(self, rng: random.Random) -> Example:
        context, previous = [], None
        for _ in range(rng.randint(0, self.context_lines) if self.context_lines else 0):
            kind = rng.choices(_STANDALONE, _STANDALONE_WEIGHTS)[0]
            lhs, previous = KINDS[kind][0](rng)
            context.append(f"{lhs}={previous}")
        kind = rng.choices(_NAMES, _WEIGHTS)[0]
        if kind == "running" and previous is not None:
            expression, value = _running_op(rng, previous)
        else:
            expression, value = KINDS[kind][0](rng)
        return {"context": context, "expression": expression, "value": value, "kind": kind}
