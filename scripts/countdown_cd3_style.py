"""Write a Countdown test set in d1's jsonl format (``{"input": "30,100,93", "output": "23"}``), drawn the way
the public 3-number data is: three numbers uniform in 1..100 and a target uniform in 1..100, kept when some
expression using each number once with + - * / reaches it. Unlike the synthetic generator (weighted shapes,
mostly additive), every solvable problem is equally likely, so it is the held-out set of another distribution
in the real file's format, read by the same loader (the RL study's ``countdown.d1``). Drop the real d1 file in
its place with ``data.eval_tasks={countdown: synthetic, countdown.d1: <path>/countdown_cd3_test.jsonl}``.

    python scripts/countdown_cd3_style.py --out data/countdown_cd3_style_test.jsonl --n 200 --seed 2024
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from fractions import Fraction
from pathlib import Path

OPS = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y if y != 0 else None,
}


def _apply(op: str, x: Fraction | None, y: Fraction | None) -> Fraction | None:
    return None if x is None or y is None else OPS[op](x, y)


def reachable(numbers: list[int]) -> set[Fraction]:
    """Every value of an expression over all three numbers, each used once (both bracketings)."""
    values: set[Fraction] = set()
    for a, b, c in itertools.permutations(Fraction(n) for n in numbers):
        for o1, o2 in itertools.product(OPS, repeat=2):
            for v in (_apply(o2, _apply(o1, a, b), c), _apply(o1, a, _apply(o2, b, c))):
                if v is not None:
                    values.add(v)
    return values


def draw(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        numbers = [rng.randint(1, 100) for _ in range(3)]
        target = rng.randint(1, 100)
        key = (tuple(sorted(numbers)), target)
        if key in seen or Fraction(target) not in reachable(numbers):
            continue
        seen.add(key)
        rows.append({"input": ",".join(map(str, numbers)), "output": str(target)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/countdown_cd3_style_test.jsonl"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in draw(args.n, args.seed)))
    print(f"wrote {args.n} problems to {args.out}")


if __name__ == "__main__":
    main()
