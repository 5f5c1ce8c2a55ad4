"""MATH-500 (HuggingFaceH4/MATH-500): competition math, equivalence by math-verify."""

from __future__ import annotations

import logging
from typing import Any

from dllm_lab.tasks.base import Example, Task, extract_answer_text

log = logging.getLogger(__name__)


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
        return super().normalize(row)

    def parse_answer(self, completion: str) -> str | None:
        return extract_answer_text(completion)

    def gold(self, example: Example) -> str:
        return str(example["answer"])

    def is_equivalent(self, a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        return str(a).strip() == str(b).strip() or _verify(str(b), str(a))
