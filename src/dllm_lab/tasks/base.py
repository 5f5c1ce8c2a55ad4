"""The task interface shared by every benchmark: prompt, parser, equivalence, correctness, reward.

A task turns a plain-dict example into a prompt, reads a model's completion back into an answer, and
scores it. Parsers never raise on model output: anything unreadable is ``None`` (no answer), which is
wrong and gets the lowest reward. Examples are plain dicts so they pickle across DataLoader workers and
serialise to jsonl without ceremony.
"""

from __future__ import annotations

import logging
import math
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

log = logging.getLogger(__name__)

Example = dict[str, Any]

# The d1 answer format (Zhao et al. 2025): reasoning first, the final answer in \boxed{} inside <answer>.
D1_SYSTEM_PROMPT = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}.\n"
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n\\boxed{...}\n</answer>"
)
PROMPT_STYLES = ("d1", "compact")
# What separates the reasoning from the answer, and what closes it: the infilling template's defaults.
D1_ANSWER_OPEN = "</reasoning>\n<answer>\n\\boxed{"
D1_ANSWER_CLOSE = "}\n</answer>"


def format_completion(reasoning: str, answer: str) -> str:
    """The reference completion in d1 format; the embedded model is trained on exactly this shape."""
    return f"<reasoning>\n{reasoning}\n{D1_ANSWER_OPEN}{answer}{D1_ANSWER_CLOSE}"


_BRACES = re.compile(r"\\boxed\{|[{}]")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces close, or ``None``. One pass over ``text``: linear
    in its length, whatever a model wrote (a truncated generation leaves boxes open)."""
    stack: list[int] = []  # start of each open brace's content; -1 for a plain "{"
    best = None
    for m in _BRACES.finditer(text):
        token = m.group()
        if token == "}":
            if stack:
                start = stack.pop()
                if start >= 0 and (best is None or start > best[0]):
                    best = (start, m.start())
        else:
            stack.append(m.end() if token != "{" else -1)
    return None if best is None else text[best[0] : best[1]].strip()


def last_answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` block (pairs matched left to right, as a lazy regex
    would), in linear time."""
    last, pos = None, 0
    while (start := text.find("<answer>", pos)) != -1:
        end = text.find("</answer>", start + 8)
        if end == -1:
            break
        last, pos = text[start + 8 : end], end + 9
    return last


def extract_answer_text(text: str) -> str | None:
    """The final answer span: last ``\\boxed{}``, else the last ``<answer>...</answer>`` block."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    tag = last_answer_tag(text)
    return (tag.strip() or None) if tag is not None else None


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_NUM = r"-?\d+(?:\.\d+)?"
# \frac{3}{4}, \dfrac{3}{4} and a plain 3/4 (not part of a date like 1/2/2020)
_LATEX_FRAC = re.compile(rf"\\[dt]?frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_SLASH_FRAC = re.compile(rf"(?<![\d./])({_NUM})\s*/\s*(\d+(?:\.\d+)?)(?![\d./])")


def _fraction_value(match: re.Match[str]) -> str:
    num, den = float(match.group(1)), float(match.group(2))
    return f"{num / den:.12f}" if den else match.group(0)  # fixed point: _NUMBER has no exponents


def parse_number(text: str | None) -> float | None:
    """The last number in ``text`` (thousands separators and ``$`` ignored), or ``None``.

    Simple fractions count as their value: ``\\frac{1}{4}`` and ``1/4`` are 0.25, not 4.
    """
    if text is None:
        return None
    text = text.replace("$", "")
    text = _LATEX_FRAC.sub(_fraction_value, text)
    text = _SLASH_FRAC.sub(_fraction_value, text)
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


class FilteredRow(ValueError):
    """A valid row that a task's options leave out (e.g. Countdown's ``num_numbers``): counted, not warned."""


_INTEGER = re.compile(r"-?[0-9]+")


def as_integer(value: Any, what: str) -> int:
    """``value`` as an int, or ``ValueError`` naming ``what``: whole numbers only. ``1.5``, ``true`` and
    ``1e400`` are errors, not 1, 1 and an overflow; strings must be plain ASCII digits."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is a boolean, not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{what} {value!r} is not a whole number")
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"{what} {value!r} is not an integer")


def ascii_digits(text: str) -> str:
    """``text`` with every Unicode decimal digit (Arabic-Indic ``١٢``, full-width ``１２`` ...) written as
    ASCII, so that a gold answer compares with what a model writes."""
    return "".join(str(unicodedata.digit(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in text)


def format_number(value: float) -> str:
    """``27.0`` -> ``"27"``, ``0.5`` -> ``"0.5"``: the canonical text of a numeric answer."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def numbers_equal(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))


class Task:
    """Base class. Subclasses set ``name``, ``required_fields`` and implement the abstract hooks.

    ``prompt_style="d1"`` prepends the d1 system prompt (what LLaDA/Dream evaluations use);
    ``"compact"`` keeps only the question and a one-line format hint (what the embedded model is
    trained on, to keep CPU sequences short). Both ask for the same answer format.
    """

    name: ClassVar[str] = "task"
    required_fields: ClassVar[tuple[str, ...]] = ("question", "answer")
    has_synthetic: ClassVar[bool] = False
    format_hint: ClassVar[str] = "Put the final answer in \\boxed{}."
    chat_template: ClassVar[bool] = True  # False: the prompt is plain text the completion continues
    has_gold_answer: ClassVar[bool] = True  # one gold answer per example (posterior sampling conditions on it)

    def __init__(self, prompt_style: str = "d1") -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style={prompt_style!r}: choose one of {PROMPT_STYLES}")
        self.prompt_style = prompt_style

    # -- prompt -------------------------------------------------------------------------------
    def question(self, example: Example) -> str:
        return str(example["question"])

    def build_prompt(self, example: Example) -> str:
        """The user message (a chat template is applied later by the model's tokenizer)."""
        if self.prompt_style == "d1":
            return f"{D1_SYSTEM_PROMPT}\n\n{self.question(example)}"
        return f"{self.question(example)}\n{self.format_hint}"

    def reference_completion(self, example: Example) -> str:
        """A gold completion in the shared format, for SFT; needs a ``reasoning`` field or none."""
        return format_completion(str(example.get("reasoning", "")), str(example["answer"]))

    # -- answers --------------------------------------------------------------------------------
    def parse_answer(self, completion: str) -> Any | None:
        """The model's final answer, or ``None`` when nothing parses. Never raises."""
        return parse_number(extract_answer_text(completion))

    def gold(self, example: Example) -> Any:
        return parse_number(str(example["answer"]))

    def gold_answer_text(self, example: Example) -> str | None:
        """The gold answer as the model writes it inside its answer box, for posterior sampling; ``None``
        when the task has no single gold answer (Countdown: any valid expression is right)."""
        return None if example.get("answer") in (None, "") else str(example["answer"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        return numbers_equal(a, b)

    def answer_is_correct(self, answer: Any | None, example: Example) -> bool:
        """Correctness of an already-parsed answer (temporal voting reuses this)."""
        return answer is not None and self.is_equivalent(answer, self.gold(example))

    def is_correct(self, completion: str, example: Example) -> bool:
        return self.answer_is_correct(self.parse_answer(completion), example)

    def reward(self, completion: str, example: Example) -> float:
        """Correctness reward, 2.0 as in d1's math tasks; subclasses override with their own."""
        return 2.0 if self.is_correct(completion, example) else 0.0

    # -- data -----------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Example:
        """One synthetic example drawn with ``rng`` (tasks with a generator override this)."""
        raise NotImplementedError(
            f"task {self.name!r} has no synthetic generator; use load(split, source) instead"
        )

    def synthetic(self, n: int, seed: int = 0) -> list[Example]:
        """``n`` examples, the same for the same seed on every machine."""
        rng = random.Random(f"{self.name}-{seed}")
        return [self.sample(rng) for _ in range(n)]

    def load(self, split: str = "test", source: str | None = None, limit: int | None = None):
        from dllm_lab.tasks.sources import load_examples

        return load_examples(self, split=split, source=source, limit=limit)

    def normalize(self, row: dict[str, Any]) -> Example:
        """Map a raw dataset row to this task's example fields. Raise ValueError if malformed."""
        missing = [f for f in self.required_fields if row.get(f) in (None, "")]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        return dict(row)

    def validate_rows(self, rows: Iterable[tuple[str, Any]], origin: str) -> Iterator[Example]:
        """Normalise ``(where, row)`` pairs, skipping malformed rows with a warning; raise if none is valid.

        ``where`` names the row in its source (``line 7`` of a jsonl or csv file, ``row 3`` of a table), so
        a warning points at what to fix. A row that overflows (``1e400``) is malformed like any other.
        """
        kept = skipped = filtered = 0
        for where, row in rows:
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"expected an object with fields, got {type(row).__name__}")
                if "__error__" in row:  # a reader could not decode this row (e.g. invalid JSON)
                    raise ValueError(row["__error__"])
                example = self.normalize(row)
            except FilteredRow:
                filtered += 1
                continue
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
                skipped += 1
                log.warning("%s: skipping %s of %s: %s", self.name, where, origin, err)
                continue
            kept += 1
            yield example
        if skipped:
            log.warning("%s: skipped %d malformed row(s) of %s", self.name, skipped, origin)
        if filtered:
            log.info("%s: left out %d row(s) of %s by the task's options", self.name, filtered, origin)
        if kept == 0:
            raise ValueError(
                f"{self.name}: no valid rows in {origin} ({skipped} malformed, {filtered} filtered); "
                f"each row needs the fields {list(self.required_fields)}"
            )
