"""Equations: one computation per example as plain text, the densest arithmetic signal for a small model.

A training aid for the embedded model, like :mod:`dllm_lab.tasks.drill`, but shaped for learning the
arithmetic itself. The prompt is the left-hand side up to ``=`` as plain text after BOS, with no chat
template (``chat_template = False``), and the completion is the value: ``<bos>185-17=`` -> ``168``.
So the value sits right after its operands, exactly as in the reasoning lines of ``arith`` and of
Countdown's halving procedure: sums, differences, halvings, small products, and running-total lines
(``185\n-17=`` -> ``168``) whose first operand is the value on the line above. And

- every masked token of the completion is a digit of the value, computed from clean operands; nothing
  can be copied from a later line (the shortcut that chained reasoning offers under uniform masking);
- about 10 tokens carry one equation, against about 45 in a drill with its chat template, answer
  wrapper and EOS padding. On a 2-core CPU that is the difference between learning to add in minutes
  and not at all (README, "The embedded tiny model").

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


def _running(rng: random.Random) -> tuple[str, int]:
    """A running-total line: the previous line's value, a line break, then one operation on it
    (``185\n-17=`` -> ``168``), as Countdown's halving reasoning writes ``+c``, ``-target`` and ``/2``."""
    value = rng.randint(1, 300)
    op = rng.choices(["+", "-", "/"], [2.0, 2.0, 1.0])[0]
    if op == "/":
        value += value % 2
        return f"{value}\n/2", value // 2
    k = rng.randint(1, min(value, 100)) if op == "-" else rng.randint(1, 100)
    return f"{value}\n{op}{k}", value + k if op == "+" else value - k


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


class Equations(Task):
    """``<bos>185-17=`` -> ``168``: one equation as plain text, answered by its value."""

    name = "equations"
    required_fields = ("expression", "value")
    has_synthetic = True
    chat_template = False

    def build_prompt(self, example: Example) -> str:
        """The left-hand side and ``=``; the same in both prompt styles (plain text has no system turn)."""
        return f"{example['expression']}="

    def reference_completion(self, example: Example) -> str:
        return str(example["value"])

    def parse_answer(self, completion: str) -> int | None:
        """The integer that makes up the first line of ``completion``; ``None`` if it is anything else."""
        lines = completion.strip().split("\n")
        match = _VALUE.fullmatch(lines[0]) if lines else None
        return int(match.group(1)) if match else None

    def gold(self, example: Example) -> int:
        return int(example["value"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and int(a) == int(b)

    def sample(self, rng: random.Random) -> Example:
        names = list(KINDS)
        kind = rng.choices(names, [KINDS[n][1] for n in names])[0]
        expression, value = KINDS[kind][0](rng)
        return {"expression": expression, "value": value, "kind": kind}
