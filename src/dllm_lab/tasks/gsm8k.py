"""GSM8K (openai/gsm8k) and SVAMP (ChilleD/SVAMP): grade-school math with numeric answers."""

from __future__ import annotations

import re
from typing import Any

from dllm_lab.tasks.base import Example, Task, ascii_digits, format_completion, format_number

_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _plain_number(text: str) -> str | None:
    """``" $1,234 "`` -> ``"1234"``, ``"١٢"`` -> ``"12"`` (gold answers in ASCII digits, as models write
    them); ``None`` unless the text is a single number."""
    cleaned = ascii_digits(text).strip().replace(",", "").replace("$", "").strip()
    return cleaned if _PLAIN_NUMBER.fullmatch(cleaned) else None


class GSM8K(Task):
    """Gold answers follow ``####`` in the reference solution; equivalence is numeric."""

    name = "gsm8k"
    hf_id, hf_config = "openai/gsm8k", "main"

    def normalize(self, row: dict[str, Any]) -> Example:
        example = super().normalize(row)
        raw = str(example["answer"])
        if "####" in raw:  # the hub format: worked solution, then "#### 72"
            reasoning, _, final = raw.rpartition("####")
            example["reasoning"] = reasoning.strip()
        else:  # already normalised (e.g. re-read from an exported jsonl): keep its reasoning
            final = raw
            example["reasoning"] = str(example.get("reasoning") or "")
        answer = _plain_number(final)
        if answer is None:
            raise ValueError(f"answer {raw[-40:]!r} is not a number (nor a solution ending '#### <number>')")
        example["answer"] = answer
        return example

    def reference_completion(self, example: Example) -> str:
        return format_completion(str(example.get("reasoning", "")), str(example["answer"]))


class SVAMP(Task):
    name = "svamp"
    hf_id, hf_config = "ChilleD/SVAMP", None
    required_fields = ("question", "answer")

    def normalize(self, row: dict[str, Any]) -> Example:
        row = dict(row)
        if "question" not in row and str(row.get("Question") or "").strip():  # no Question: malformed
            body = str(row.get("Body") or "").strip()
            row["question"] = f"{body} {str(row['Question']).strip()}".strip()
        if "answer" not in row and "Answer" in row:
            row["answer"] = row["Answer"]
        example = super().normalize(row)
        plain = _plain_number(str(example["answer"]))
        if plain is None:
            raise ValueError(f"answer {example['answer']!r} is not numeric")
        example["answer"] = format_number(float(plain))  # the hub stores floats: 27.0 -> "27"
        return example
