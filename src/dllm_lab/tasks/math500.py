"""MATH-500 (HuggingFaceH4/MATH-500): competition math, equivalence by math-verify."""

from __future__ import annotations

import logging
import re
from typing import Any

from dllm_lab.tasks.base import Example, Task, extract_answer_text

log = logging.getLogger(__name__)


MAX_ANSWER_CHARS = 400
_LONG_LITERAL = re.compile(r"\d{50,}")


def _group_after(text: str, i: int) -> tuple[str, int]:
    """The TeX argument starting at ``text[i]`` (a braced group or one token) and the index after it."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        return "", i
    if text[i] == "{":
        depth = 0
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1 : j], j + 1
        return text[i + 1 :], len(text)
    if text[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", text[i:])
        end = i + (m.end() if m else 1)
        return text[i:end], end
    m = re.match(r"\d+", text[i:])
    end = i + (m.end() if m else 1)
    return text[i:end], end


def too_costly(answer: str) -> bool:
    """Whether a model's answer could make sympy run for minutes (math-verify's timeouts are off).

    Sympy evaluates integer powers and factorials eagerly, so ``9^{9^{9}}`` or ``(10^{10})!`` would
    stall a reward computation. Rejected: over-long answers, 50-digit literals, power towers, exponents
    with more than 5 digits and factorials of anything but a short literal or a single letter.
    """
    if len(answer) > MAX_ANSWER_CHARS or _LONG_LITERAL.search(answer):
        return True
    for i, ch in enumerate(answer):
        if ch == "^":
            exponent, end = _group_after(answer, i + 1)
            rest = answer[end:].lstrip()
            if any(c in exponent for c in "^!") or rest.startswith("^") or re.search(r"\d{6,}", exponent):
                return True
        elif ch == "!" and not answer[:i].endswith("\\"):  # "\!" is a thin space (10,\!000)
            before = answer[:i].rstrip()
            if not (re.search(r"(?<!\d)\d{1,3}$", before) or re.search(r"(?<![a-zA-Z\\])[a-zA-Z]$", before)):
                return True
    return False


def _verify(gold: str, answer: str) -> bool:
    from math_verify import parse, verify

    try:
        # math-verify's signal-based timeouts only work on the main thread; disable them.
        g = parse(f"${gold}$", parsing_timeout=None)
        a = parse(f"${answer}$", parsing_timeout=None)
        return bool(g and a and verify(g, a, timeout_seconds=None))
    except Exception as err:  # math-verify raises many types on odd LaTeX: count as not equal
        log.debug("math-verify failed on %r vs %r: %s", gold, answer, err)
        return False


class MATH500(Task):
    name = "math500"
    hf_id, hf_config = "HuggingFaceH4/MATH-500", None

    def normalize(self, row: dict[str, Any]) -> Example:
        row = dict(row)
        if "question" not in row and "problem" in row:
            row["question"] = row["problem"]
        if not row.get("reasoning") and row.get("solution"):  # MATH's worked solution: the SFT reasoning
            row["reasoning"] = str(row["solution"])
        return super().normalize(row)

    def parse_answer(self, completion: str) -> str | None:
        return extract_answer_text(completion)

    def gold(self, example: Example) -> str:
        return str(example["answer"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        """``a`` (the model's answer) equals the gold ``b``: same text, or math-verify agrees."""
        if a is None or b is None:
            return False
        if str(a).strip() == str(b).strip():
            return True
        if too_costly(str(a)):
            log.debug("math500: answer %r too costly to verify; counted wrong", str(a)[:80])
            return False
        return _verify(str(b), str(a))
