"""Countdown: combine the given numbers with + - * / to hit the target (d1's cd3 setting)."""

from __future__ import annotations

import random
import re
from typing import Any

from dllm_lab.tasks.base import Example, FilteredRow, Task, as_integer, extract_answer_text
from dllm_lab.tasks.safe_eval import UnsafeExpression, expression_numbers, safe_arith_eval

# Expression shapes over three numbers a, b, c. Weighted towards + and - so that the synthetic
# distribution, like the public cd3 set, is mostly additive; products and quotients still occur.
_SHAPES: list[tuple[str, float]] = [
    ("{a}+{b}+{c}", 1.0), ("{a}+{b}-{c}", 2.0), ("{a}-{b}-{c}", 1.0), ("{a}-({b}-{c})", 0.5),
    ("{a}*{b}+{c}", 0.5), ("{a}*{b}-{c}", 0.5), ("{a}*({b}-{c})", 0.4), ("({a}+{b})*{c}", 0.3),
    ("{a}/{b}+{c}", 0.4), ("{a}/{b}-{c}", 0.3), ("({a}+{b})/{c}", 0.4), ("({a}-{b})/{c}", 0.3),
]


def _steps(shape: str, a: int, b: int, c: int) -> list[str]:
    """Two equations that compute the shape, e.g. ``100-93=7`` then ``30-7=23``.

    A negative intermediate is parenthesised when reused (``74-(-15)=89``, not ``74--15=89``).
    """
    inner_first = "(" in shape and shape.index("(") > 0  # a op (b op c)
    fmt = lambda v: str(int(v)) if float(v).is_integer() else f"{v:g}"  # noqa: E731
    operand = lambda v: f"({fmt(v)})" if v < 0 else fmt(v)  # noqa: E731
    ops = [ch for ch in shape if ch in "+-*/"]
    if inner_first:
        first = safe_arith_eval(f"{b}{ops[1]}{c}")
        second = safe_arith_eval(f"{a}{ops[0]}{operand(first)}")
        return [f"{b}{ops[1]}{c}={fmt(first)}", f"{a}{ops[0]}{operand(first)}={fmt(second)}"]
    first = safe_arith_eval(f"{a}{ops[0]}{b}")
    second = safe_arith_eval(f"{operand(first)}{ops[1]}{c}")
    return [f"{a}{ops[0]}{b}={fmt(first)}", f"{operand(first)}{ops[1]}{c}={fmt(second)}"]


def _signed_sum_steps(numbers: list[int], target: int) -> tuple[list[str], str] | None:
    """Reasoning that finds a +/- solution by halving: with ``S`` the sum of all numbers, the numbers
    to subtract sum to ``(S - target) / 2``.

    E.g. 30, 100, 93 -> 23: ``30+100=130``, ``+93=223``, ``-23=200``, ``/2=100`` (subtract 100: the
    answer is ``30+93-100``). After the first line each line is a running total: it applies one
    operation to the value on the line above, so every line is a two-operand computation (a tiny
    model adds two numbers long before three) and the reasoning stays as short as with a three-term
    sum, inside the default 64-token canvas. A pair to subtract gets its own line (``12+40=52``).
    Returns ``(steps, answer)``, or ``None`` when no sign pattern reaches the target.
    """
    total = sum(numbers)
    diff = total - target
    if diff < 0 or diff % 2:
        return None
    half = diff // 2
    a, b, c = numbers
    steps = [f"{a}+{b}={a + b}", f"+{c}={total}", f"-{target}={diff}", f"/2={half}"]
    index_sets = [()] if half == 0 else [(i,) for i in range(3)] + [(i, j) for i in range(3) for j in range(i + 1, 3)]
    for subtract in index_sets:
        if sum(numbers[i] for i in subtract) != half:
            continue
        if len(subtract) == 2:
            steps.append(f"{numbers[subtract[0]]}+{numbers[subtract[1]]}={half}")
        keep = [n for i, n in enumerate(numbers) if i not in subtract]
        answer = "+".join(map(str, keep)) + "".join(f"-{numbers[i]}" for i in subtract)
        return steps, answer
    return None


class Countdown(Task):
    """``num_numbers``: keep only rows with that many numbers (d1 trains on the 3-number rows of
    ``Jiayi-Pan/Countdown-Tasks-3to4``); other rows are filtered out and counted, not warned about."""

    name = "countdown"
    hf_id, hf_config = "Jiayi-Pan/Countdown-Tasks-3to4", None
    required_fields = ("numbers", "target")
    has_synthetic = True
    has_gold_answer = False
    format_hint = "Put the expression in \\boxed{}."

    def __init__(self, prompt_style: str = "d1", num_numbers: int | None = None) -> None:
        super().__init__(prompt_style)
        if num_numbers is not None and num_numbers < 2:
            raise ValueError(f"num_numbers={num_numbers} must be at least 2")
        self.num_numbers = num_numbers

    def question(self, example: Example) -> str:
        nums = ", ".join(str(n) for n in example["numbers"])
        return (
            f"Using the numbers {nums}, create an expression that equals {example['target']}. "
            "Use each number exactly once with + - * /."
        )

    def normalize(self, row: dict[str, Any]) -> Example:
        row = dict(row)
        if "numbers" not in row:  # d1 jsonl {"input": "30,100,93", "output": "23"}; HF {"nums", "target"}
            if "input" in row:
                row["numbers"] = str(row["input"]).split(",")
                row["target"] = row.get("output")
            elif "nums" in row:
                row["numbers"] = list(row["nums"])
        if isinstance(row.get("numbers"), str):  # e.g. a csv cell "30,100,93"
            row["numbers"] = row["numbers"].replace(",", " ").split()
        if row.get("numbers") in (None, []) or row.get("target") in (None, ""):
            raise ValueError("missing field(s) numbers/target (or d1 'input'/'output')")
        if not isinstance(row["numbers"], (list, tuple)):
            raise ValueError(f"numbers {row['numbers']!r} is not a list")
        row["numbers"] = [as_integer(x, "number") for x in row["numbers"]]
        if self.num_numbers is not None and len(row["numbers"]) != self.num_numbers:
            raise FilteredRow(f"{len(row['numbers'])} numbers, not {self.num_numbers}")
        target = row["target"]
        if isinstance(target, str) and re.fullmatch(r"\s*-?[0-9]+\.0*\s*", target):  # "23.0" as written by pandas
            target = target.strip().split(".")[0]
        row["target"] = as_integer(target, "target")
        return row

    def gold_answer_text(self, example: Example) -> str | None:
        return None  # any expression that hits the target is right: there is no one answer to condition on

    def parse_answer(self, completion: str) -> str | None:
        """The expression (left of any ``=``), whitespace removed; ``None`` if absent."""
        text = extract_answer_text(completion)
        if text is None:
            return None
        expression = text.split("=")[0].replace(" ", "").replace("\\times", "*").replace("\\div", "/")
        return expression or None

    def gold(self, example: Example) -> int:
        return int(example["target"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        return a is not None and b is not None and str(a) == str(b)

    def _value(self, expression: str, example: Example) -> float | None:
        """Value of ``expression`` if it uses exactly the given numbers, each once; else ``None``.

        Every literal counts, so ``(2+3)*5/2.5`` over 2, 3, 5 is rejected: 2.5 was not given.
        """
        literals = expression_numbers(expression)
        if any(type(x) is not int for x in literals) or sorted(literals) != sorted(example["numbers"]):
            return None
        try:
            return safe_arith_eval(expression)
        except UnsafeExpression:
            return None

    def answer_is_correct(self, answer: Any | None, example: Example) -> bool:
        if answer is None:
            return False
        value = self._value(str(answer), example)
        return value is not None and abs(value - example["target"]) < 1e-5

    def reward(self, completion: str, example: Example) -> float:
        """d1: 1.0 if each number is used once and the value hits the target, 0.1 for any other
        expression, 0.0 when there is none."""
        answer = self.parse_answer(completion)
        if answer is None:
            return 0.0
        return 1.0 if self.answer_is_correct(answer, example) else 0.1

    def sample(self, rng: random.Random) -> Example:
        """Three numbers in 1..100 and a target in 1..100 reachable by one of ``_SHAPES``.

        The reference reasoning is the halving procedure of :func:`_signed_sum_steps` when a +/-
        solution exists, else the two equations of the generating shape.
        """
        shapes, weights = zip(*_SHAPES, strict=True)
        while True:
            a, b, c = (rng.randint(1, 100) for _ in range(3))
            shape = rng.choices(shapes, weights)[0]
            expr = shape.format(a=a, b=b, c=c)
            try:
                value = safe_arith_eval(expr)
                steps = _steps(shape, a, b, c)
            except UnsafeExpression:
                continue
            if not value.is_integer() or not 1 <= value <= 100:
                continue
            if any("." in s for s in steps):  # keep intermediate values integral
                continue
            numbers = [a, b, c]
            rng.shuffle(numbers)
            signed = _signed_sum_steps(numbers, int(value))
            if signed is not None:  # prefer the learnable halving procedure when a +/- solution exists
                steps, expr = signed
            return {"numbers": numbers, "target": int(value), "answer": expr, "reasoning": "\n".join(steps)}
