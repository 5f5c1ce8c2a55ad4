"""Synthetic GSM-like word problems with short, checkable reasoning (the embedded default)."""

from __future__ import annotations

import random

from dllm_lab.tasks.base import Example, Task

_NAMES = ["Tom", "Ann", "Sam", "Mia", "Leo", "Zoe", "Max", "Ivy", "Ben", "Eva"]
_ITEMS = ["apples", "books", "coins", "stamps", "cards", "pens", "shells", "marbles"]


class Arith(Task):
    """Two or three operations on small numbers, e.g. ``23+15=38`` then ``38-7=31``."""

    name = "arith"
    has_synthetic = True

    def sample(self, rng: random.Random) -> Example:
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        total = rng.randint(2, 40)
        sentences = [f"{name} has {total} {item}."]
        steps: list[str] = []
        for _ in range(rng.choice([2, 2, 3])):
            kind = rng.choice(["buy", "give", "times"])
            if kind == "times" and total <= 15:
                k = rng.randint(2, 3)
                sentences.append(f"Then {name} gets {k} times as many {item}.")
                steps.append(f"{total}*{k}={total * k}")
                total *= k
            elif kind == "give" and total > 1:
                k = rng.randint(1, total - 1)
                sentences.append(f"{name} gives away {k} {item}.")
                steps.append(f"{total}-{k}={total - k}")
                total -= k
            else:
                k = rng.randint(1, 30)
                sentences.append(f"{name} buys {k} more {item}.")
                steps.append(f"{total}+{k}={total + k}")
                total += k
        sentences.append(f"How many {item} does {name} have now?")
        return {"question": " ".join(sentences), "answer": str(total), "reasoning": "\n".join(steps)}
