"""Arithmetic drills: chains of sums, differences and halvings, one true equation per line.

A training aid for the embedded model, which learns the answer format and Sudoku long before it can add:
the word problems of ``arith`` and Countdown's halving reasoning are made of exactly these lines
(``30+65+8=103``, ``103-87=16``, ``16/2=8``), and a drill spends every reasoning token on them.
It is a full task (prompt, parser, correctness), so drill accuracy is also a direct probe of the
model's arithmetic.
"""

from __future__ import annotations

import random

from dllm_lab.tasks.base import Example, Task


class Drill(Task):
    """``Compute 29+26-17 step by step.`` -> ``29+26=55`` / ``55-17=38`` / answer 38."""

    name = "drill"
    has_synthetic = True

    def sample(self, rng: random.Random) -> Example:
        value = rng.randint(1, 99)
        expression, steps = str(value), []
        if rng.random() < 0.3:  # a three-term sum on one line, as Countdown's reasoning starts
            b, c = rng.randint(1, 99), rng.randint(1, 99)
            expression += f"+{b}+{c}"
            steps.append(f"{value}+{b}+{c}={value + b + c}")
            value += b + c
        for _ in range(rng.choice([1, 2, 2, 3])):
            if value > 1 and rng.random() < 0.45:
                k = rng.randint(1, min(value - 1, 99))
                expression += f"-{k}"
                steps.append(f"{value}-{k}={value - k}")
                value -= k
            else:
                k = rng.randint(1, 99)
                expression += f"+{k}"
                steps.append(f"{value}+{k}={value + k}")
                value += k
        if value % 2 == 0 and rng.random() < 0.4:
            expression = f"({expression})/2"
            steps.append(f"{value}/2={value // 2}")
            value //= 2
        return {"question": f"Compute {expression} step by step.", "answer": str(value),
                "reasoning": "\n".join(steps)}
